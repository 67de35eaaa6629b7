"""RabbitMQ as the broker (``SYNDICATE_BROKER_URL=amqp://...``), Redis as the store.

Every test works in a RabbitMQ virtual host of its own (tests/broker_fixtures.py)
and skips where no RabbitMQ answers on 127.0.0.1:5672. The channel test runs a
whole deployment of real processes (API, workers, beat, partner sinks, SMTP
sink) from tests/faults_harness.py with only the broker URL changed; the others
drive the real broker through the app's own configuration. The channel
integration tests elsewhere also run on RabbitMQ (their ``[amqp]`` copies,
marker ``both_brokers``, tests/conftest.py); this module keeps what only
RabbitMQ has (delivery limit, delayed sends in the store, the whole deployment).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time

import pytest
import requests
from standardwebhooks import Webhook

from broker_fixtures import rabbitmq_vhost  # noqa: F401  (fixture)
from conftest import wait_for
from faults_harness import Burst, Deployment, command, make_articles, row, wait_until


# Smaller than the Redis fault suite's 500: the feed renders of a long backlog, not the broker, set the
# time, and the slow suite's budget is about 90 s.
KILL_LOAD = 200


def amqp_app(vhost, **changes):
    """The syndicate Celery app configured for ``vhost``, beside the run's (Redis) store."""
    from syndicate.config import get_settings
    from syndicate.workers.app import make_app

    return make_app(dataclasses.replace(get_settings(), broker_url=vhost.url, **changes))


def declare_queues(app) -> None:
    with app.connection_for_write() as connection:
        for queue in app.conf.task_queues:
            queue(connection.default_channel).declare()


def test_channels_deliver_end_to_end_on_rabbitmq(rabbitmq_vhost):
    with Deployment(SYNDICATE_BROKER_URL=rabbitmq_vhost.url) as deployment:
        deployment.start()  # its warm-up already took one article through every channel
        burst = Burst(deployment.api_url, make_articles(4, f"rmq-{os.getpid()}"), threads=2).join()
        assert len(burst.accepted) == 4, burst.statuses
        tally, _ = deployment.wait_delivered(burst.accepted, timeout=120)
        assert tally.complete(), f"lost on RabbitMQ: {tally.lost_text()}"

        # Partners verify every delivery with the standardwebhooks package, as they would in production.
        for name, sink in deployment.sinks.items():
            webhook = Webhook(deployment.secrets[name])
            for request in sink.requests():
                webhook.verify(request.body, request.headers)

        # The work went through RabbitMQ: the Redis store holds no broker queue at all.
        assert not list(deployment.client.scan_iter(match="fault:broker:*")), "messages went through Redis"
        # Beat's upkeep task sends a delayed call (a retry's) from the store's schedule once it is due.
        call = {"name": "syndicate.feeds.sweep", "args": [], "kwargs": {}, "task_id": f"delayed-{os.getpid()}"}
        deployment.client.zadd("fault:broker:delayed", {json.dumps(call): time.time()})
        wait_until(lambda: deployment.client.zcard("fault:broker:delayed") == 0, 30, "the due delayed call to be sent")
        ready = requests.get(f"{deployment.api_url}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["broker"]["transport"] == "amqp"


def test_a_delayed_send_waits_in_the_store_not_in_rabbitmq(rabbitmq_vhost, redis_client):
    from syndicate.queues import queue_depths
    from syndicate.store import key
    from syndicate.workers.app import DELAYED_KEY, release_delayed

    app = amqp_app(rabbitmq_vhost)
    declare_queues(app)
    app.send_task("syndicate.feeds.sweep", countdown=30, retries=3)
    scheduled = redis_client.zrange(key(*DELAYED_KEY), 0, -1, withscores=True)
    assert len(scheduled) == 1
    call, due = json.loads(scheduled[0][0]), scheduled[0][1]
    assert call["name"] == "syndicate.feeds.sweep" and call["retries"] == 3
    assert due > time.time() + 20
    # Nothing reached the broker, so no worker holds a message it cannot run yet.
    assert queue_depths(app=app)["feeds"] == 0

    assert release_delayed(app, now=time.time()) == 0, "released before it was due"
    assert release_delayed(app, now=due + 1) == 1
    assert redis_client.zcard(key(*DELAYED_KEY)) == 0
    assert queue_depths(app=app)["feeds"] == 1
    with app.connection_for_write() as connection:
        message = connection.SimpleQueue(app.amqp.queues["feeds"]).get(timeout=10)
        # The retry count travels with it, so max_retries still ends a task that keeps failing.
        assert message.headers["task"] == "syndicate.feeds.sweep" and message.headers["retries"] == 3
        message.ack()


def test_a_poison_message_stops_at_the_delivery_limit_and_becomes_a_dead_letter(rabbitmq_vhost, redis_client):
    from syndicate import deadletters
    from syndicate.queues import queue_depths
    from syndicate.workers.app import collect_dead_letters, declare_dead_letter_route

    limit = 2
    app = amqp_app(rabbitmq_vhost, broker_delivery_limit=limit)
    declare_dead_letter_route(app)
    declare_queues(app)
    subject = f"evt_poison{os.getpid()}"
    app.send_task("syndicate.feeds.apply_event", args=[subject])

    # A worker that dies running the message returns it (Celery rejects it with requeue on
    # WorkerLostError): here every delivery is returned, as a message that kills each worker would be.
    deliveries = 0
    with app.connection_for_write() as connection:
        queue = connection.SimpleQueue(app.amqp.queues["feeds"])
        for _ in range(limit + 5):
            try:
                message = queue.get(timeout=2)
            except queue.Empty:
                break
            deliveries += 1
            message.reject(requeue=True)
    assert deliveries == limit + 1, f"delivered {deliveries} times with x-delivery-limit {limit}"

    recorded = wait_for(lambda: collect_dead_letters(app), timeout=30, message="the dead-lettered message")
    assert recorded == 1
    letter = next(d for d in deadletters.listing(50) if d["subject"] == subject)
    assert letter["queue"] == "feeds" and letter["task"] == "syndicate.feeds.apply_event"
    assert letter["args"] == [subject]
    assert f"gave up after {limit + 1} deliveries" in letter["error"]
    assert collect_dead_letters(app) == 0, "a dead letter was recorded twice"
    assert queue_depths(app=app)["feeds"] == 0


@pytest.mark.slow
def test_worker_parents_killed_mid_burst_on_rabbitmq_lose_nothing(rabbitmq_vhost):
    from test_faults_workers import KILL_AT, _assert_nothing_lost_or_doubled

    with Deployment(SYNDICATE_BROKER_URL=rabbitmq_vhost.url) as deployment:
        deployment.start()
        burst = Burst(deployment.api_url, make_articles(KILL_LOAD, f"rmqkill{os.getpid()}"))
        wait_until(lambda: burst.accepted_count() >= KILL_LOAD * KILL_AT, 120, f"{KILL_AT:.0%} of the burst accepted",
                   interval=0.02)
        for group in ("main", "webhooks"):
            os.kill(deployment.procs[f"worker-{group}"].pid, signal.SIGKILL)
        killed_at = time.monotonic()
        for group in ("main", "webhooks"):
            deployment.start_worker(group)  # a supervisor (systemd, docker, `syndicate run`) starts a new one
        burst.join()
        tally, _ = deployment.wait_delivered(burst.accepted, timeout=240)
        recovery = time.monotonic() - killed_at
        row("worker parent SIGKILL, RabbitMQ broker", f"{KILL_LOAD} articles, 4 threads, 2 partners, 1 list",
            f"kill -9 both worker parents at {KILL_AT:.0%}; new workers started",
            tally.lost_text(), tally.dup_text(),
            f"all delivered {recovery:.0f} s after the kill (RabbitMQ requeues a dead consumer's messages at once); "
            f"{deployment.redispatched()}",
            command("test_broker_rabbitmq.py::test_worker_parents_killed_mid_burst_on_rabbitmq_lose_nothing"))
        _assert_nothing_lost_or_doubled(tally, burst)
