"""Test fixtures: a real Redis, real Celery workers, a real HTTP server.

Redis: SYNDICATE_TEST_REDIS_URL, else 127.0.0.1:6379 when it answers, else an
embedded redis-server started for the run (SYNDICATE_TEST_EMBEDDED=1 forces
that). Every run works under its own key prefix (broker queues included) and
deletes it at the end, so runs on one Redis never see each other.

Brokers: the channel integration tests (marker ``both_brokers``) run once on the
Redis broker and once on RabbitMQ (``[redis]`` and ``[amqp]``); the in-process
worker and API server follow the test's ``broker`` fixture. The amqp copies use
a virtual host of the run's own (tests/broker_fixtures.py) and skip, saying so,
where no RabbitMQ answers.

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
        BROKERS.close()
        delete_prefix(get_redis(), get_settings().redis_prefix)
    finally:
        if _EMBEDDED is not None:
            _EMBEDDED.stop()
        shutil.rmtree(_TMP, ignore_errors=True)


@pytest.fixture(scope="session")
def celery_app():
    from syndicate.workers.app import app

    return app


@pytest.fixture()
def celery_worker(broker, celery_app, redis_client):
    """Real Celery worker threads consuming every queue of the test's broker."""
    return BROKERS.worker()


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


@pytest.fixture()
def api_server(broker, redis_client):
    """The real HTTP API (uvicorn) on loopback, on the test's broker; yields its base URL."""
    return BROKERS.api_url()


BROKER_NAMES = ("redis", "amqp")


def pytest_configure(config):
    config.addinivalue_line("markers", "both_brokers: a channel integration test run once per broker "
                            "(Redis and RabbitMQ; the amqp copy skips where no RabbitMQ answers)")


def pytest_generate_tests(metafunc):
    if "broker" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_brokers"):
        metafunc.parametrize("broker", BROKER_NAMES, indirect=True)


def _on_amqp(item) -> bool:
    callspec = getattr(item, "callspec", None)
    return callspec is not None and callspec.params.get("broker") == "amqp"


def pytest_collection_modifyitems(items):
    # A module's amqp copies run after its other tests, so the in-process worker changes broker
    # twice per module rather than at every test.
    first = {}
    for index, item in enumerate(items):
        first.setdefault(item.nodeid.split("::", 1)[0], index)
    order = {id(item): (first[item.nodeid.split("::", 1)[0]], _on_amqp(item), index)
             for index, item in enumerate(items)}
    items.sort(key=lambda item: order[id(item)])


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    # Back on Redis after the last amqp copy, for the tests that enqueue without a broker fixture.
    if nextitem is None or not _on_amqp(nextitem):
        BROKERS.use("redis")


def _point_app_at_settings() -> None:
    """Configure the process-wide Celery app for the current settings' broker, dropping its pools."""
    import dataclasses

    from celery.app.defaults import DEFAULTS
    from kombu import pools

    from syndicate.config import get_settings
    from syndicate.workers.app import app, celery_config

    settings = get_settings()
    on_redis = celery_config(dataclasses.replace(settings, broker_url=None))
    on_amqp = celery_config(dataclasses.replace(settings, broker_url="amqp://localhost"))
    config = {**{name: DEFAULTS.get(name) for name in set(on_redis) ^ set(on_amqp)}, **celery_config(settings)}
    del config["beat_schedule"]  # the task modules' schedule, collected at import, stays
    app.conf.update(config)
    pools.reset()
    app._pool = None
    app.__dict__.pop("amqp", None)  # queues, router and producer pool follow the new configuration


def _broker_upkeep(app, stop: threading.Event) -> None:
    """What beat sends every second on RabbitMQ (release due delayed sends, collect dead letters)."""
    while not stop.wait(1.0):
        try:
            app.send_task("syndicate.ingest.broker_upkeep")
        except Exception:  # the connection is closing at a switch of broker
            if stop.is_set():
                return
            raise


class Brokers:
    """The run's in-process worker and API server, on one broker at a time.

    Both use the process-wide Celery app and settings, so a switch stops them, points the
    environment and the app at the other broker, and they start again when a test asks.
    RabbitMQ work goes to a virtual host of the run's own, deleted at the end.
    """

    def __init__(self) -> None:
        self.current = "redis"
        self.vhost = None
        self._worker = None
        self._server: ServerThread | None = None
        self._upkeep: tuple[threading.Thread, threading.Event] | None = None

    def use(self, name: str) -> None:
        if name == self.current:
            return
        url = self._amqp_url() if name == "amqp" else None
        self.stop()
        if url:
            os.environ["SYNDICATE_BROKER_URL"] = url
        else:
            os.environ.pop("SYNDICATE_BROKER_URL", None)
        reset_settings()
        _point_app_at_settings()
        self.current = name

    def _amqp_url(self) -> str:
        from broker_fixtures import NOT_REACHABLE, Vhost, rabbitmq_reachable

        if os.environ.get("SYNDICATE_TEST_EMBEDDED") == "1":
            pytest.skip("the amqp copies of the channel tests run in `make test`; this run is about the embedded Redis")
        if not rabbitmq_reachable():
            pytest.skip(NOT_REACHABLE)
        if self.vhost is None:
            vhost = Vhost()
            vhost.create()
            self.vhost = vhost
        return self.vhost.url

    def worker(self):
        if self._worker is None:
            import celery.contrib.testing.tasks  # noqa: F401  (registers celery.ping)
            from celery.contrib.testing.worker import start_worker

            from syndicate.workers.app import QUEUES, app

            running = start_worker(app, pool="threads", concurrency=4, queues=list(QUEUES),
                                   perform_ping_check=False, loglevel="WARNING", shutdown_timeout=15)
            self._worker = (running, running.__enter__())
            if self.current == "amqp":
                stop = threading.Event()
                thread = threading.Thread(target=_broker_upkeep, args=(app, stop), daemon=True)
                thread.start()
                self._upkeep = (thread, stop)
        return self._worker[1]

    def api_url(self) -> str:
        if self._server is None:
            from syndicate.api import create_app

            self._server = ServerThread(create_app()).__enter__()
        return self._server.url

    def stop(self) -> None:
        if self._upkeep is not None:
            thread, stop = self._upkeep
            stop.set()
            thread.join(10)
            self._upkeep = None
        if self._server is not None:
            self._server.__exit__(None, None, None)
            self._server = None
        if self._worker is not None:
            from celery.worker import state

            running, worker = self._worker
            # Asked to stop, the worker's event loop notices only when its poll returns; on RabbitMQ
            # that poll sleeps until the next timer (seconds). A wake-up makes it look at once.
            state.should_terminate = 0
            if getattr(worker, "hub", None) is not None:
                worker.hub.call_soon(lambda: None)
            running.__exit__(None, None, None)
            self._worker = None

    def close(self) -> None:
        self.use("redis")
        self.stop()
        if self.vhost is not None:
            self.vhost.delete()


BROKERS = Brokers()


@pytest.fixture()
def broker(request):
    """The broker of the test's in-process worker and API server: "redis", or each of
    ``BROKER_NAMES`` for a test marked ``both_brokers``."""
    name = getattr(request, "param", "redis")
    BROKERS.use(name)
    return name


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
    processes; ``redis_url`` points it at a Redis server the test runs itself. ``broker_url``
    (a RabbitMQ virtual host of its own: queue names there carry no prefix) moves its queues
    to RabbitMQ; without it they stay in its Redis, whatever broker the session worker is on.
    """

    def __init__(self, tmp_path: Path, redis_url: str | None = None, broker_url: str | None = None,
                 **settings: object) -> None:
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
        self.env.pop("SYNDICATE_BROKER_URL", None)
        if broker_url:
            self.env["SYNDICATE_BROKER_URL"] = broker_url
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

    def start_worker(self, name: str, queues: str, concurrency: int = 1, ready_timeout: float = 60,
                     pool: str = "prefork"):
        """A real ``syndicate worker`` (prefork, or threads) in its own process group; waits until it is ready."""
        import subprocess
        import sys

        log = self.tmp / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "syndicate.cli.main", "worker", "-Q", queues, "-c", str(concurrency),
                 "-P", pool, "-n", f"{name}-{uuid.uuid4().hex[:6]}@%h"],
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
def broker_env(broker):
    """What the test's own ``syndicate`` processes add to their environment to use the test's broker:
    on RabbitMQ a virtual host of their own (queue names there carry no key prefix, so the session
    worker would otherwise take their tasks); on Redis nothing (their key prefix separates them)."""
    if broker != "amqp":
        yield {}
        return
    from broker_fixtures import Vhost

    vhost = Vhost()
    vhost.create()
    try:
        yield {"SYNDICATE_BROKER_URL": vhost.url}
    finally:
        vhost.delete()


@pytest.fixture()
def deployment(tmp_path, broker_env):
    """A :class:`Deployment` on the run's Redis and the test's broker; its workers are stopped afterwards."""
    dep = Deployment(tmp_path, broker_url=broker_env.get("SYNDICATE_BROKER_URL"))
    try:
        yield dep
    finally:
        dep.close()
