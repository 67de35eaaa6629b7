"""Fault suite: the Redis server (store and broker) restarted or down in the middle of ingest.

The deployment's own redis-server runs with AOF (``appendfsync everysec``); a
restart is SHUTDOWN (which fsyncs the AOF) then a new server on the same port
and data directory, as a supervisor would do. Nothing the API answered with a
2xx may be lost, and nobody restarts the API or the workers by hand.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from faults_harness import Burst, Deployment, command, make_articles, row, wait_until

RESTARTS = 5
RESTART_LOAD = 300
OUTAGE_LOAD = 300
OUTAGE_SECONDS = 20


def _assert_delivered_once(deployment: Deployment, tally, burst: Burst) -> None:
    assert not burst.server_errors, f"the API answered 5xx other than 503: {burst.server_errors[:3]}"
    assert not burst.unaccepted, f"{len(burst.unaccepted)} articles never got a 2xx (API did not reconnect?)"
    assert tally.complete(), f"accepted articles lost: {tally.lost_text()}"
    assert tally.dup_feed == 0, f"{tally.dup_feed} repeated items in the main feed"
    for partner, most in tally.ids_per_event_max.items():
        assert most <= 1, f"partner {partner} got one event under {most} different webhook-ids"
    assert not deployment.worker_exits(), f"worker processes exited: {deployment.worker_exits()}"
    for name, proc in deployment.procs.items():
        assert "Unrecoverable error" not in proc.log_text(), f"{name} hit an unrecoverable error"


def _restarts_mid_burst(stop: str, times: int, test: str) -> None:
    with Deployment() as deployment:
        deployment.start()
        burst = Burst(deployment.api_url, make_articles(RESTART_LOAD, uuid.uuid4().hex[:6]), give_up_after=300)
        downtime = []
        for i in range(times):
            # Each restart waits for ingest to make progress after the previous one: the API reconnected.
            target = RESTART_LOAD * (i + 1) // (times + 2)
            wait_until(lambda: burst.accepted_count() >= target, 180,
                       f"{target} articles accepted before restart {i + 1}", interval=0.02)
            began = time.monotonic()
            if stop == "shutdown":
                deployment.redis_server.shutdown()
            else:
                deployment.redis_server.kill()
            deployment.redis_server.start()
            downtime.append(time.monotonic() - began)
        restarted_at = time.monotonic()
        burst.join()
        tally, _ = deployment.wait_delivered(burst.accepted, timeout=300)
        recovery = time.monotonic() - restarted_at
        how = "SHUTDOWN + start" if stop == "shutdown" else "kill -9 + start"
        row(f"Redis restart x{times} (AOF everysec, {how})", f"{RESTART_LOAD} articles, 4 threads, 2 partners, 1 list",
            f"{times} restarts, {sum(downtime) / times:.1f} s down each; {burst.statuses.get('503', 0)} answers 503",
            tally.lost_text(), tally.dup_text(),
            f"{recovery:.0f} s to all delivered after the last restart; {deployment.redispatched()}",
            command(f"test_faults_redis.py::{test}"))
        _assert_delivered_once(deployment, tally, burst)


@pytest.mark.slow
def test_redis_restarted_five_times_mid_burst_loses_nothing_accepted():
    _restarts_mid_burst("shutdown", RESTARTS, "test_redis_restarted_five_times_mid_burst_loses_nothing_accepted")


@pytest.mark.slow
def test_redis_killed_mid_burst_loses_nothing_accepted():
    """kill -9 of the server process: with everysec Redis has written (not yet fsynced) every answered write."""
    _restarts_mid_burst("kill", 3, "test_redis_killed_mid_burst_loses_nothing_accepted")


@pytest.mark.slow
def test_redis_down_20s_during_ingest_answers_503_then_delivers_every_2xx():
    with Deployment() as deployment:
        deployment.start()
        burst = Burst(deployment.api_url, make_articles(OUTAGE_LOAD, uuid.uuid4().hex[:6]), give_up_after=300)
        wait_until(lambda: burst.accepted_count() >= OUTAGE_LOAD * 0.3, 120, "30% of the burst accepted",
                   interval=0.02)
        deployment.redis_server.shutdown()
        down_at = time.monotonic()
        wait_until(lambda: burst.unavailable or burst.server_errors, OUTAGE_SECONDS,
                   "an error answer from the API while Redis is down")
        time.sleep(max(OUTAGE_SECONDS - (time.monotonic() - down_at), 0))  # the outage itself, not a wait
        deployment.redis_server.start()
        up_at = time.monotonic()
        burst.join()
        tally, _ = deployment.wait_delivered(burst.accepted, timeout=300)
        recovery = time.monotonic() - up_at
        row("Redis down 20 s during ingest", f"{OUTAGE_LOAD} articles, 4 threads, 2 partners, 1 list",
            f"SHUTDOWN, 20 s, start; {burst.statuses.get('503', 0)} answers 503, "
            f"{len(burst.server_errors)} other 5xx",
            tally.lost_text(), tally.dup_text(),
            f"{recovery:.0f} s to all delivered after Redis came back; {deployment.redispatched()}",
            command("test_faults_redis.py::test_redis_down_20s_during_ingest_answers_503_then_delivers_every_2xx"))
        assert burst.unavailable, f"no 503 while Redis was down; answers: {burst.statuses}"
        for answer in burst.unavailable:
            assert (answer["retry_after"] or "").isdigit(), f"503 without a Retry-After in seconds: {answer}"
            assert answer["content_type"].startswith("application/json"), f"503 body is not JSON: {answer}"
            assert json.loads(answer["body"]).get("message"), f"503 body does not say what happened: {answer}"
        _assert_delivered_once(deployment, tally, burst)
