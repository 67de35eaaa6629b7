"""Test fixtures: a real Redis, real Celery workers, a real HTTP server.

Redis: SYNDICATE_TEST_REDIS_URL, else 127.0.0.1:6379 when it answers, else an
embedded redis-server started for the run (SYNDICATE_TEST_EMBEDDED=1 forces
that). Every run works under its own key prefix (broker queues included) and
deletes it at the end, so runs on one Redis never see each other.

The environment is set here, at import, before any syndicate module reads its
settings.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "articles"
SEED = EXAMPLES / "us-russia-military-talks.json"

_TMP = Path(tempfile.mkdtemp(prefix="syndicate-test-"))
_EMBEDDED = None


def _choose_redis() -> str:
    global _EMBEDDED
    from syndicate.embedded import EmbeddedRedis, redis_reachable

    if os.environ.get("SYNDICATE_TEST_EMBEDDED") != "1":
        for url in (os.environ.get("SYNDICATE_TEST_REDIS_URL"), "redis://127.0.0.1:6379/0"):
            if url and redis_reachable(url):
                return url
    _EMBEDDED = EmbeddedRedis(_TMP / "redis").start()
    return _EMBEDDED.url


RUN_ID = uuid.uuid4().hex[:10]
os.environ.update(
    {
        "SYNDICATE_REDIS_URL": _choose_redis(),
        "SYNDICATE_REDIS_PREFIX": f"syntest:{RUN_ID}:",
        "SYNDICATE_DATA_DIR": str(_TMP / "data"),
        "SYNDICATE_API_TOKEN": "test-ingest-token",
        "SYNDICATE_ADMIN_TOKEN": "test-admin-token",
        "SYNDICATE_SECRET_KEY": "test-secret-key-0123456789",
        "SYNDICATE_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
        "SYNDICATE_RECONCILE_AFTER_SECONDS": "1",
    }
)

from syndicate.config import reset_settings  # noqa: E402

reset_settings()

INGEST_AUTH = {"Authorization": "Bearer test-ingest-token"}
ADMIN_AUTH = {"Authorization": "Bearer test-admin-token"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_seed() -> dict:
    return json.loads(SEED.read_text(encoding="utf-8"))


def unique_article(section: str | None = None, **changes: object) -> dict:
    """The seed story under a fresh id (and optionally a fresh section), so tests never collide."""
    article = load_seed()
    article["id"] = f"t-{uuid.uuid4().hex[:12]}"
    if section:
        article["section"] = section
        article["labels"] = [section]
    article.update(changes)
    return article


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.05, message: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def redis_client():
    from syndicate.store import get_redis

    client = get_redis()
    client.ping()
    yield client


@pytest.fixture(scope="session", autouse=True)
def _cleanup_run():
    yield
    from syndicate.config import get_settings
    from syndicate.store import delete_prefix, get_redis

    try:
        delete_prefix(get_redis(), get_settings().redis_prefix)
    finally:
        if _EMBEDDED is not None:
            _EMBEDDED.stop()
        shutil.rmtree(_TMP, ignore_errors=True)


@pytest.fixture(scope="session")
def celery_app():
    from syndicate.workers.app import app

    return app


@pytest.fixture(scope="session")
def celery_worker(celery_app, redis_client):
    """Real Celery worker threads consuming every queue of the real broker."""
    import celery.contrib.testing.tasks  # noqa: F401  (registers celery.ping)
    from celery.contrib.testing.worker import start_worker

    from syndicate.workers.app import QUEUES

    with start_worker(
        celery_app,
        pool="threads",
        concurrency=4,
        queues=list(QUEUES),
        perform_ping_check=False,
        loglevel="WARNING",
        shutdown_timeout=15,
    ) as worker:
        yield worker


class ServerThread:
    """A real uvicorn server on a loopback port, in a thread."""

    def __init__(self, app) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=15, message="API server start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="session")
def api_server(redis_client):
    """The real HTTP API (uvicorn) on loopback; yields its base URL."""
    from syndicate.api import create_app

    with ServerThread(create_app()) as server:
        yield server.url


@pytest.fixture()
def http():
    import requests

    with requests.Session() as session:
        yield session


class Deployment:
    """A deployment of its own inside the test run, driven through real ``syndicate`` processes.

    It has its own key prefix (broker queues included) under the run's prefix, so the run's
    cleanup removes it, and the session's in-process worker never sees its queues: a test
    decides which queues have a worker, and when. Fault tests kill and restart these
    processes; ``redis_url`` points it at a Redis server the test runs itself.
    """

    def __init__(self, tmp_path: Path, redis_url: str | None = None, **settings: object) -> None:
        import redis

        self.tmp = tmp_path
        self.prefix = f"{os.environ['SYNDICATE_REDIS_PREFIX']}dep{uuid.uuid4().hex[:8]}:"
        self.redis_url = redis_url or os.environ["SYNDICATE_REDIS_URL"]
        self.env = {
            **os.environ,
            "SYNDICATE_REDIS_URL": self.redis_url,
            "SYNDICATE_REDIS_PREFIX": self.prefix,
            "SYNDICATE_DATA_DIR": str(tmp_path / "data"),
            "PYTHONUNBUFFERED": "1",
            **{f"SYNDICATE_{name.upper()}": str(value) for name, value in settings.items()},
        }
        self.redis = redis.Redis.from_url(self.redis_url, decode_responses=True, socket_timeout=10)
        self.workers: dict[str, "subprocess.Popen[bytes]"] = {}

    def key(self, *parts: object) -> str:
        return self.prefix + ":".join(str(p) for p in parts)

    def broker_key(self, name: str) -> str:
        """A broker key (a queue's list, ``unacked``) as kombu names it under the prefix."""
        return f"{self.prefix}broker:{name}"

    def cli(self, *args: str, timeout: float = 60) -> "subprocess.CompletedProcess[str]":
        import subprocess
        import sys

        return subprocess.run([sys.executable, "-m", "syndicate.cli.main", *args], env=self.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout)

    def publish(self, article: dict) -> str:
        """Publish straight to Redis with ``syndicate publish`` (commit, then enqueue); returns the event id."""
        import re

        path = self.tmp / f"{article['id']}-v{article['version']}.json"
        path.write_text(json.dumps(article), encoding="utf-8")
        done = self.cli("publish", str(path))
        found = re.search(r"accepted \S+ (evt_\w+)", done.stdout)
        assert done.returncode == 0 and found, done.stdout + done.stderr
        return found.group(1)

    def start_worker(self, name: str, queues: str, concurrency: int = 1, ready_timeout: float = 60):
        """A real ``syndicate worker`` (prefork) in its own process group; waits until it is ready."""
        import subprocess
        import sys

        log = self.tmp / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "syndicate.cli.main", "worker", "-Q", queues, "-c", str(concurrency),
                 "-n", f"{name}-{uuid.uuid4().hex[:6]}@%h"],
                env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.workers[name] = proc
        wait_for(lambda: proc.poll() is not None or " ready." in self.log(name), timeout=ready_timeout,
                 message=f"worker {name} ready")
        assert proc.poll() is None, self.log(name)[-3000:]
        return proc

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def receipts(self, queue: str) -> list[dict]:
        return [json.loads(x) for x in self.redis.lrange(self.key("receipts", queue), 0, -1)]

    def receipt_count(self, queue: str, subject: str) -> int:
        return sum(1 for r in self.receipts(queue) if r["subject"] == subject)

    def stop_worker(self, name: str, timeout: float = 30) -> None:
        import signal
        import subprocess

        proc = self.workers.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def close(self) -> None:
        for name in list(self.workers):
            try:
                self.stop_worker(name)
            except ProcessLookupError:
                pass
        self.redis.close()


@pytest.fixture()
def deployment(tmp_path):
    """A :class:`Deployment` on the run's Redis; its workers are stopped afterwards."""
    dep = Deployment(tmp_path)
    try:
        yield dep
    finally:
        dep.close()
