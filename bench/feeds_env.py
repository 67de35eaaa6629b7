"""Shared setup for the feeds benchmarks: an isolated Redis prefix, a temp data dir, and real
``syndicate api`` / ``syndicate worker`` subprocesses on loopback. Everything is removed at exit."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

TMP = Path(tempfile.mkdtemp(prefix="syndicate-bench-"))
TOKEN = "bench-ingest-token"
os.environ.update({
    "SYNDICATE_REDIS_URL": os.environ.get("SYNDICATE_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "SYNDICATE_REDIS_PREFIX": f"synbench:{uuid.uuid4().hex[:8]}:",
    "SYNDICATE_DATA_DIR": str(TMP / "data"),
    "SYNDICATE_API_TOKEN": TOKEN,
    "SYNDICATE_ADMIN_TOKEN": "bench-admin-token",
    "SYNDICATE_SECRET_KEY": "bench-secret-key-0123456789",
})
SYNDICATE = str(Path(sys.executable).with_name("syndicate"))
ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "examples" / "articles" / "us-russia-military-talks.json"
_procs: list[subprocess.Popen] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(*argv: str, env: dict | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(list(argv), env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _procs.append(proc)
    return proc


def start_api(*extra: str) -> str:
    port = free_port()
    start(SYNDICATE, "api", "--port", str(port), *extra)
    wait_port(port)
    return f"http://127.0.0.1:{port}"


def start_workers(queues: str, count: int = 1, concurrency: int = 2, pool: str = "prefork") -> None:
    for n in range(count):
        start(SYNDICATE, "worker", "-Q", queues, "-P", pool, "-c", str(concurrency), "--loglevel", "WARNING",
              "-n", f"bench-{n}-{uuid.uuid4().hex[:4]}@%h")


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port} after {timeout}s")


@atexit.register
def _cleanup() -> None:
    for proc in _procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in _procs:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    try:
        from syndicate.config import get_settings
        from syndicate.store import delete_prefix, get_redis

        delete_prefix(get_redis(), get_settings().redis_prefix)
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
