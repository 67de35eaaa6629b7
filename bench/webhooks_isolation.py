"""A hanging partner must not slow the others: fast-partner latency with and without one, same run.

    .venv/bin/python bench/webhooks_isolation.py [--events 30] [--concurrency 2]

One real `syndicate worker -Q ingest,webhooks` process; a fast partner sink,
and in the second phase also a partner whose sink never answers (attempts run
into the read timeout). Each event is published on its own and timed from the
publish call to its arrival at the fast sink. Prints p50/p95 of both phases and
the ratio (about 1.0x means the hanging partner costs the others nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path
from results import record  # bench/ is on sys.path: run as bench/<name>.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _common  # noqa: E402
from webhooks_sinks import Answer, Sink, start_worker, stop_worker, wait  # noqa: E402

os.environ["SYNDICATE_WEBHOOK_ALLOW_NETWORKS"] = "127.0.0.0/8"
os.environ.setdefault("SYNDICATE_WEBHOOK_READ_TIMEOUT", "10")
_REDIS_URL, _EMBEDDED = _common.setup_environment("webhooks-isolation")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()

    from syndicate import events
    from syndicate.config import get_settings
    from syndicate.webhooks import registry
    from syndicate.webhooks.guard import Guard
    from syndicate.workers.ingest import enqueue_fanout

    seed = json.loads((ROOT / "examples/articles/us-russia-military-talks.json").read_text())
    section = f"Iso {uuid.uuid4().hex[:6]}"
    guard = Guard.from_settings(get_settings())
    fast, hanging = Sink(), Sink(Answer(hang=True))
    registry.add({"name": "fast", "url": fast.url, "sections": [section]}, guard)
    worker = start_worker("ingest,webhooks", args.concurrency)

    def latencies(n: int) -> list[float]:
        out = []
        for _ in range(n):
            before = fast.count()
            started = time.monotonic()
            article = {**seed, "id": f"iso-{uuid.uuid4().hex[:12]}", "section": section, "labels": [section]}
            enqueue_fanout(events.ingest(article).event_id)
            wait(lambda: fast.count() > before, 60, "the fast partner")
            out.append((fast.requests()[before].at - started) * 1000)
        return out

    try:
        latencies(3)  # warm-up: worker start, connection opened
        alone = latencies(args.events)
        registry.add({"name": "hanging", "url": hanging.url, "sections": [section]}, guard)
        beside = latencies(args.events)
        held = hanging.count()
    finally:
        hanging.close()
        fast.close()
        stop_worker(worker)

    p = _common.percentile
    print(f"{args.events} events each phase; hanging partner received {held} requests and answered none")
    print(f"fast partner alone:            p50 {p(alone, 50):7.1f} ms   p95 {p(alone, 95):7.1f} ms")
    print(f"fast partner beside a hanging: p50 {p(beside, 50):7.1f} ms   p95 {p(beside, 95):7.1f} ms")
    print(f"ratio beside / alone: p50 {p(beside, 50) / p(alone, 50):.2f}x   p95 {p(beside, 95) / p(alone, 95):.2f}x")
    record("fast partner p95 beside a hanging one", p(beside, 95), "ms", "alone", p(alone, 95),
           "<= 1.5x alone", p(beside, 95) <= 1.5 * p(alone, 95), note="lower is better")


if __name__ == "__main__":
    try:
        main()
    finally:
        _common.cleanup(_EMBEDDED)
