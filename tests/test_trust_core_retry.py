"""Redis errors are transient: every task retries on them by default (issue 8, class 7, worker side).

Celery reads ``autoretry_for``, ``retry_backoff`` and ``max_retries`` from the task class when
the decorator leaves them out, so the policy on ``SyndicateTask`` is every task's default.
"""

from __future__ import annotations

import redis

from conftest import wait_for

from syndicate import deadletters
from syndicate.store import get_redis, key
from syndicate.workers.app import app
from syndicate.workers.base import TRANSIENT_ERRORS, SyndicateTask


@app.task(name="syndicate.ingest.test_flaky_store", base=SyndicateTask, queue_name="ingest", bind=True)
def flaky_store(self, subject: str, failures: int) -> None:
    """Fails like a restarting Redis ``failures`` times, then does its work (a test-only task)."""
    attempt = get_redis().incr(key("test-flaky", subject))
    if attempt <= failures:
        raise redis.ConnectionError("Error 111 connecting to the store. Connection refused.")
    get_redis().set(key("test-flaky", subject, "done"), attempt)


def test_a_task_that_meets_redis_connection_errors_is_retried_until_it_succeeds(celery_worker, redis_client):
    subject = "flaky-1"
    flaky_store.apply_async(args=[subject, 2])
    # Backoff 1 s then 2 s (with jitter, at most that): two retries, the third attempt does the work.
    assert wait_for(lambda: redis_client.get(key("test-flaky", subject, "done")), timeout=15,
                    message="the task to succeed after its retries") == "3"
    assert not [d for d in deadletters.listing(200) if d["task"] == flaky_store.name and d["args"][0] == subject]


def test_the_default_policy_comes_from_the_base_class():
    task = app.tasks["syndicate.ingest.fanout"]  # its decorator names no retry options
    assert task.autoretry_for == TRANSIENT_ERRORS
    assert issubclass(redis.ConnectionError, task.autoretry_for)
    assert issubclass(redis.TimeoutError, task.autoretry_for)
    assert task.retry_backoff and task.retry_backoff_max <= 30
    assert task.max_retries == 12  # about two minutes of jittered backoff: an outage is ridden out
    # Celery wrapped its run with the retry behaviour (it does so only when autoretry_for is set).
    assert hasattr(task, "_orig_run")


def test_every_task_retries_on_redis_errors_and_waits_at_most_30_s():
    tasks = {name: task for name, task in app.tasks.items()
             if name.startswith("syndicate.") and not name.startswith("syndicate.ingest.test_")}
    assert "syndicate.feeds.apply_event" in tasks and "syndicate.webhooks.dispatch_event" in tasks
    for name, task in tasks.items():
        assert issubclass(redis.ConnectionError, tuple(task.autoretry_for or ())), name
        assert issubclass(redis.TimeoutError, tuple(task.autoretry_for or ())), name
        assert task.retry_backoff_max <= 30, name


@app.task(name="syndicate.ingest.test_slow_backoff", base=SyndicateTask, queue_name="ingest", bind=True,
          retry_backoff=600, retry_backoff_max=3600, retry_jitter=False)
def slow_backoff(self, subject: str) -> None:
    """Asks for a ten-minute wait before its retry (a test-only task)."""
    if get_redis().incr(key("test-flaky", subject)) == 1:
        raise redis.ConnectionError("Error 111 connecting to the store. Connection refused.")


def _retry_message(redis_client, subject: str) -> dict | None:
    import json

    from syndicate.config import get_settings

    broker = get_settings().broker_prefix
    raw = [json.loads(v)[0] for v in redis_client.hvals(broker + "unacked")] + \
          [json.loads(v) for v in redis_client.lrange(broker + "ingest", 0, -1)]
    for message in raw:
        headers = message.get("headers", {})
        if headers.get("task") == slow_backoff.name and subject in headers.get("argsrepr", "") and headers.get("retries") == 1:
            return headers
    return None


def test_a_retry_never_waits_past_the_broker_visibility_timeout(celery_worker, redis_client):
    import datetime

    from syndicate.config import get_settings
    from syndicate.workers.base import max_countdown

    subject = "slow-backoff-1"
    sent = datetime.datetime.now(datetime.timezone.utc)
    slow_backoff.apply_async(args=[subject])
    headers = wait_for(lambda: _retry_message(redis_client, subject), message="the retry message in the broker")
    wait = (datetime.datetime.fromisoformat(headers["eta"]) - sent).total_seconds()
    # Its decorator asked for 600 s; the base class cut it to the cap, inside the visibility timeout.
    assert wait <= max_countdown() + 1
    assert max_countdown() <= get_settings().visibility_timeout / 2
