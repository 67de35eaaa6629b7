"""The retry schedule lives in Redis: a retry survives the worker that scheduled it.

Real `syndicate worker` and `syndicate beat` processes run under a key prefix
of their own (inside this run's prefix, so the run's cleanup removes it), so
the session's in-process worker never takes their tasks.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid

import pytest

from conftest import ROOT, unique_article, wait_for
from syndicate.config import get_settings
from webhooks_fixtures import Answer, Sink, verify


def _env(prefix: str, data_dir: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "SYNDICATE_REDIS_PREFIX": prefix,
        "SYNDICATE_DATA_DIR": data_dir,
        "SYNDICATE_WEBHOOK_RETRY_SCHEDULE": "0,4,1",
        "PYTHONPATH": str(ROOT),
    })
    return env


def _cli(env, *args, check=True):
    return subprocess.run([sys.executable, "-m", "syndicate.cli.main", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=check)


def _start(env, *args):
    return subprocess.Popen([sys.executable, "-m", "syndicate.cli.main", *args], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _stop(proc, sig=signal.SIGTERM):
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_scheduled_retry_survives_a_worker_crash(tmp_path, redis_client):
    prefix = f"{get_settings().redis_prefix}restart-{uuid.uuid4().hex[:6]}:"
    env = _env(prefix, str(tmp_path))
    sink = Sink().answer(Answer(503))
    procs = []
    try:
        section = f"Restart {uuid.uuid4().hex[:6]}"
        added = _cli(env, "partners", "add", "restart-partner", sink.url, "--section", section)
        secret = re.search(r"secret: (whsec_\S+)", added.stdout).group(1)
        worker = _start(env, "worker", "-Q", "ingest,webhooks", "-c", "1", "-n", f"r1-{uuid.uuid4().hex[:4]}@%h")
        procs.append(worker)
        article = tmp_path / "story.json"
        article.write_text(json.dumps(unique_article(section=section)))
        _cli(env, "publish", str(article))
        wait_for(sink.count, timeout=60, message="first attempt from the first worker")
        delivery_id = sink.requests()[0].headers["webhook-id"]
        # Killed only once the 503 is recorded and the retry scheduled (4 s ± 20% later): a kill
        # between the request and its record is the lease's case, tested below.
        wait_for(lambda: redis_client.hget(prefix + f"webhooks:delivery:{delivery_id}", "attempts") == "1",
                 timeout=30, message="the first attempt recorded")
        _stop(worker, signal.SIGKILL)
        schedule = redis_client.zrange(prefix + "webhooks:schedule", 0, -1, withscores=True)
        assert len(schedule) == 1 and schedule[0][1] > time.time() and schedule[0][0] == delivery_id
        time.sleep(max(schedule[0][1] - time.time(), 0) + 0.5)
        assert sink.count() == 1  # nobody was left to retry in memory
        procs.append(_start(env, "worker", "-Q", "webhooks", "-c", "1", "-n", f"r2-{uuid.uuid4().hex[:4]}@%h"))
        procs.append(_start(env, "beat"))
        wait_for(lambda: sink.count() == 2, timeout=60, message="the retry from the restarted worker")
        first, second = sink.requests()
        assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery_id
        assert first.headers["webhook-timestamp"] != second.headers["webhook-timestamp"]
        verify(secret, second)
        shown = wait_for(lambda: (lambda d: d if d["status"] == "succeeded" else None)(
            json.loads(_cli(env, "deliveries", "show", delivery_id).stdout)), timeout=30, interval=0.3,
            message="delivery logged as succeeded")
        assert [a["status_code"] for a in shown["attempt_log"]] == [503, 200]
    finally:
        for proc in procs:
            _stop(proc)
        sink.close()


def _start_logged(env, log_path, *args):
    log = open(log_path, "w")
    return subprocess.Popen([sys.executable, "-m", "syndicate.cli.main", *args], env=env, cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _delivery(env, delivery_id):
    return json.loads(_cli(env, "deliveries", "show", delivery_id).stdout)


def _publish_to_hanging_partner(tmp_path, env, sink, tag):
    section = f"Stop {uuid.uuid4().hex[:6]}"
    added = _cli(env, "partners", "add", f"{tag}-{uuid.uuid4().hex[:6]}", sink.url, "--section", section)
    secret = re.search(r"secret: (whsec_\S+)", added.stdout).group(1)
    article = tmp_path / f"{tag}.json"
    article.write_text(json.dumps(unique_article(section=section)))
    _cli(env, "publish", str(article))
    return secret


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_warm_shutdown_lets_the_attempt_in_flight_finish(tmp_path, redis_client, pool):
    """SIGTERM to the worker (as `syndicate run` and docker send it) while a partner is still answering."""
    prefix = f"{get_settings().redis_prefix}sigterm-{uuid.uuid4().hex[:6]}:"
    env = _env(prefix, str(tmp_path))
    sink = Sink(Answer(hang=True))
    log_path = tmp_path / "worker.log"
    worker = None
    try:
        secret = _publish_to_hanging_partner(tmp_path, env, sink, "sigterm")
        worker = _start_logged(env, log_path, "worker", "-Q", "ingest,webhooks", "-c", "1", "-P", pool,
                               "-n", f"t1-{uuid.uuid4().hex[:4]}@%h")
        wait_for(sink.count, timeout=60, message="the attempt reaching the partner")
        worker.send_signal(signal.SIGTERM)  # the main process only: Celery's warm shutdown
        wait_for(lambda: "waiting up to" in log_path.read_text(), timeout=30,
                 message="the worker process waiting for its attempt in flight")
        sink.release()  # the partner answers 200 now, during the shutdown
        worker.wait(60)
        [request] = sink.requests()
        verify(secret, request)
        shown = _delivery(env, request.headers["webhook-id"])
        assert shown["status"] == "succeeded"
        assert [a["status_code"] for a in shown["attempt_log"]] == [200]
        assert redis_client.zscore(prefix + "webhooks:schedule", shown["id"]) is None
    finally:
        sink.release()
        if worker is not None:
            _stop(worker)
        sink.close()


@pytest.mark.both_brokers
def test_attempt_cut_by_a_hard_kill_comes_back_once_with_the_same_id(tmp_path, redis_client, broker_env):
    """SIGKILL mid-attempt: nothing is recorded, the lease brings the delivery back, one success is logged."""
    prefix = f"{get_settings().redis_prefix}kill-{uuid.uuid4().hex[:6]}:"
    env = {**_env(prefix, str(tmp_path)), **broker_env}
    sink = Sink().answer(Answer(hang=True))  # the first request hangs; later ones get 200
    procs = []
    try:
        secret = _publish_to_hanging_partner(tmp_path, env, sink, "kill")
        worker = _start(env, "worker", "-Q", "ingest,webhooks", "-c", "1", "-n", f"k1-{uuid.uuid4().hex[:4]}@%h")
        procs.append(worker)
        wait_for(sink.count, timeout=60, message="the attempt reaching the partner")
        _stop(worker, signal.SIGKILL)
        delivery_id = sink.requests()[0].headers["webhook-id"]
        record = redis_client.hgetall(prefix + f"webhooks:delivery:{delivery_id}")
        assert record["status"] == "pending" and record["attempts"] == "0"
        lease = float(record["lease_until"])
        assert redis_client.zscore(prefix + "webhooks:schedule", delivery_id) == pytest.approx(lease)
        # Fast-forward to the end of the lease (it outlasts any attempt: about a minute by default).
        redis_client.hset(prefix + f"webhooks:delivery:{delivery_id}", "lease_until", 0)
        redis_client.zadd(prefix + "webhooks:schedule", {delivery_id: time.time() - 1})
        sink.release()
        procs.append(_start(env, "worker", "-Q", "webhooks", "-c", "1", "-n", f"k2-{uuid.uuid4().hex[:4]}@%h"))
        procs.append(_start(env, "beat"))
        wait_for(lambda: _delivery(env, delivery_id)["status"] == "succeeded", timeout=60, interval=0.3,
                 message="the delivery recovered by the drain")
        requests = sink.requests()
        assert len(requests) == 2
        assert {r.headers["webhook-id"] for r in requests} == {delivery_id}
        verify(secret, requests[1])
        assert [a["status_code"] for a in _delivery(env, delivery_id)["attempt_log"]] == [200]
    finally:
        sink.release()
        for proc in procs:
            _stop(proc)
        sink.close()
