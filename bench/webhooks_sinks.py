"""Shared parts of the webhook benches: a real webhooks worker, and the tests' loopback partner sinks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from webhooks_fixtures import Answer, Sink  # noqa: E402,F401  (the same sinks the tests use)


def start_worker(queues: str, concurrency: int, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(extra_env or {}))
    return subprocess.Popen(
        [sys.executable, "-m", "syndicate.cli.main", "worker", "-Q", queues, "-c", str(concurrency),
         "--loglevel", "WARNING", "-n", f"bench-{uuid.uuid4().hex[:4]}@%h"],
        env=env, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.002)
