"""Shared plumbing of the benchmarks: a Redis to run on and an isolated key prefix.

Benchmarks print ratios against a baseline measured in the same run on the same
machine, never absolute pass/fail thresholds.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def setup_environment(tag: str) -> tuple[str, object | None]:
    """Point SYNDICATE_* at a Redis (local if reachable, else embedded) under a fresh prefix.

    Returns (redis_url, embedded_server_or_None); call before importing workers.
    """
    from syndicate.embedded import EmbeddedRedis, redis_reachable

    embedded = None
    url = os.environ.get("SYNDICATE_REDIS_URL") or "redis://127.0.0.1:6379/0"
    if not redis_reachable(url):
        embedded = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="syndicate-bench-"))).start()
        url = embedded.url
    os.environ["SYNDICATE_REDIS_URL"] = url
    os.environ["SYNDICATE_REDIS_PREFIX"] = f"synbench:{tag}:{uuid.uuid4().hex[:8]}:"
    os.environ.setdefault("SYNDICATE_DATA_DIR", tempfile.mkdtemp(prefix="syndicate-bench-data-"))
    from syndicate.config import reset_settings

    reset_settings()
    return url, embedded


def cleanup(embedded: object | None) -> None:
    from syndicate.config import get_settings
    from syndicate.store import delete_prefix, get_redis

    delete_prefix(get_redis(), get_settings().redis_prefix)
    if embedded is not None:
        embedded.stop()  # type: ignore[attr-defined]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]
