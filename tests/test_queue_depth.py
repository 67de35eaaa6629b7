"""Queue depth, the autoscaling signal: right on Redis with priorities, and read from RabbitMQ.

On the Redis transport a queue whose messages carry priorities is several lists
(``feeds``, ``feeds\\x06\\x163``, ...): a plain LLEN misses all but one of them.
``syndicate status`` (and the console, /metrics and the reconciler through
``syndicate.queues``) must count them all.
"""

from __future__ import annotations

import dataclasses
import re

from kombu import Connection

from broker_fixtures import rabbitmq_vhost  # noqa: F401  (fixture)


def status_depths(output: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^queue (\w+)\s+(\d+) waiting$", output, re.M)}


def test_redis_depth_counts_every_priority_list(deployment, monkeypatch):
    from syndicate.config import reset_settings
    from syndicate.queues import priority_lists, queue_depths

    with Connection(deployment.redis_url, transport_options={"global_keyprefix": deployment.broker_key("")}) as conn:
        queue = conn.SimpleQueue("feeds")
        for priority in (0, 3, 6, 9, 9):
            queue.put({"n": priority}, priority=priority)
        queue.close()
    lists = {name: deployment.redis.llen(deployment.broker_key(name)) for name in priority_lists("feeds")}
    assert all(lists.values()), f"the messages did not spread over the priority lists: {lists}"
    assert deployment.redis.llen(deployment.broker_key("feeds")) < 5  # what a plain LLEN would report

    done = deployment.cli("status")
    assert done.returncode == 0, done.stderr
    assert status_depths(done.stdout) == {"ingest": 0, "feeds": 5, "webhooks": 0, "newsletter": 0}, done.stdout

    monkeypatch.setenv("SYNDICATE_REDIS_PREFIX", deployment.prefix)
    reset_settings()
    try:
        assert queue_depths() == {"ingest": 0, "feeds": 5, "webhooks": 0, "newsletter": 0}
    finally:
        monkeypatch.undo()
        reset_settings()


def test_rabbitmq_depth_is_read_from_the_broker(rabbitmq_vhost, tmp_path):
    from conftest import Deployment
    from syndicate.config import get_settings
    from syndicate.queues import queue_depths
    from syndicate.workers.app import make_app

    app = make_app(dataclasses.replace(get_settings(), broker_url=rabbitmq_vhost.url))
    for _ in range(3):
        app.send_task("syndicate.webhooks.deliver", args=["dlv_depth"])
    app.send_task("syndicate.feeds.sweep")
    # Queues nobody declared yet (this vhost is new) hold nothing.
    assert queue_depths(app=app) == {"ingest": 0, "feeds": 1, "webhooks": 3, "newsletter": 0}

    dep = Deployment(tmp_path, broker_url=rabbitmq_vhost.url)
    try:
        done = dep.cli("status")
    finally:
        dep.close()
    assert done.returncode == 0, done.stderr
    assert status_depths(done.stdout) == {"ingest": 0, "feeds": 1, "webhooks": 3, "newsletter": 0}, done.stdout
    assert "(RabbitMQ)" in done.stdout and f":{rabbitmq_vhost.password}@" not in done.stdout
