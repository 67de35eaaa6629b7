"""``GET /readyz``: the store, the broker and a live worker on every queue, each check listed.

Every test runs a real ``syndicate api`` process on a deployment prefix of its own, so
the heartbeats of the session's in-process worker never make it ready by accident.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import pytest
import requests

from conftest import ROOT, Deployment, free_port, wait_for

# The wiring syndicate/workers/app.py is meant to carry: a heartbeat from worker_ready until worker_shutdown.
WIRED_WORKER = """
import sys
from celery.signals import worker_ready, worker_shutdown
from syndicate import instance
from syndicate.workers.app import app

@worker_ready.connect
def _start_heartbeat(sender, **_):
    instance.start_heartbeat(sender.hostname, queues=sorted(sender.app.amqp.queues.consume_from))

@worker_shutdown.connect
def _stop_heartbeat(**_):
    instance.stop_heartbeats()

app.worker_main(["worker", "-Q", sys.argv[1], "-c", "1", "-n", sys.argv[2], "--without-gossip",
                 "--without-mingle", "--loglevel", "INFO"])
"""


class Api:
    def __init__(self, env: dict[str, str], log) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "syndicate.cli.main", "api", "--port", str(self.port)],
                                     env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

        def answers():
            assert self.proc.poll() is None, "syndicate api exited"
            try:
                # A Response is falsy when its status is 4xx/5xx, and 503 is an answer here.
                return requests.get(f"{self.url}/readyz", timeout=10) is not None
            except requests.ConnectionError:
                return False

        wait_for(answers, timeout=30, interval=0.1, message="syndicate api to answer")

    def readyz(self) -> requests.Response:
        return requests.get(f"{self.url}/readyz", timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(15)


@pytest.fixture()
def dep(tmp_path):
    deployment = Deployment(tmp_path)
    yield deployment
    deployment.close()


@pytest.fixture()
def api(dep, tmp_path):
    with open(tmp_path / "api.log", "ab") as log:
        server = Api(dep.env, log)
    yield server
    server.stop()


@pytest.fixture()
def dep_settings(dep, monkeypatch):
    """This process's settings pointed at the deployment, so start_heartbeat writes where its API reads."""
    from syndicate import instance
    from syndicate.config import reset_settings

    monkeypatch.setenv("SYNDICATE_REDIS_PREFIX", dep.prefix)
    reset_settings()
    yield
    instance.stop_heartbeats()
    monkeypatch.undo()
    reset_settings()


def _not_ready(response: requests.Response, error: str = "not_ready") -> dict:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    body = response.json()
    assert body["error"] == error and body["status"] == "unavailable" and body["message"]
    return body


def test_without_a_worker_readyz_is_503_and_lists_each_check(api):
    body = _not_ready(api.readyz())
    checks = body["checks"]
    assert set(checks) == {"store", "broker", "workers"}
    assert checks["store"]["ok"] is True and checks["broker"]["ok"] is True
    assert checks["workers"]["ok"] is False
    assert "no worker heartbeat" in checks["workers"]["message"]
    assert "workers" in body["message"]
    # Liveness is another question: the process and its store are fine.
    assert requests.get(f"{api.url}/healthz", timeout=10).status_code == 200


def test_ready_only_while_every_queue_has_a_live_worker(api, dep_settings):
    from syndicate import instance

    instance.start_heartbeat("ingest-only@test", queues=("ingest",))
    wait_for(lambda: api.readyz().json()["checks"]["workers"].get("workers"), timeout=15,
             message="the first heartbeat")
    body = _not_ready(api.readyz())
    assert "feeds, webhooks, newsletter" in body["checks"]["workers"]["message"]
    assert list(body["checks"]["workers"]["workers"]) == ["ingest-only@test"]

    instance.start_heartbeat("channels@test", queues=("feeds", "webhooks", "newsletter"))
    ready = wait_for(lambda: (r := api.readyz()).status_code == 200 and r, timeout=15, message="readyz 200")
    checks = ready.json()["checks"]
    assert ready.json()["status"] == "ok"
    assert checks["workers"]["workers"]["channels@test"]["queues"] == ["feeds", "newsletter", "webhooks"]
    assert all(check["ok"] for check in checks.values())

    # A worker that shuts down takes its heartbeat with it: not ready at once, not after 30 s.
    instance.stop_heartbeats()
    _not_ready(api.readyz())


def test_a_real_worker_makes_it_ready_and_its_shutdown_unready(api, dep, tmp_path):
    name = f"readyz-{uuid.uuid4().hex[:6]}@test"
    with open(tmp_path / "worker.log", "ab") as log:
        worker = subprocess.Popen([sys.executable, "-c", WIRED_WORKER, "ingest,feeds,webhooks,newsletter", name],
                                  env=dep.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        ready = wait_for(lambda: worker.poll() is None and (r := api.readyz()).status_code == 200 and r,
                         timeout=60, interval=0.2, message="readyz 200 with a real worker")
        assert ready.json()["checks"]["workers"]["workers"][name]["queues"] == \
            ["feeds", "ingest", "newsletter", "webhooks"]
        os.killpg(worker.pid, signal.SIGTERM)  # a warm shutdown, as `syndicate run` stops it
        worker.wait(30)
        _not_ready(api.readyz())
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def test_with_the_store_down_every_check_fails_with_its_reason(dep, tmp_path):
    env = {**dep.env, "SYNDICATE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    with open(tmp_path / "api.log", "ab") as log:
        server = Api(env, log)
    try:
        body = _not_ready(server.readyz(), error="store_unavailable")
        assert {name for name, check in body["checks"].items() if not check["ok"]} == {"store", "broker", "workers"}
        assert "unreachable" in body["checks"]["store"]["message"]
    finally:
        server.stop()
