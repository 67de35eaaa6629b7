"""The event log and the reconciler: a broker failure between commit and enqueue, or a channel
message lost inside the broker after fan-out, loses nothing.

Each test reconciles only its own events (``event_ids``, or a deployment of its own), so the
events other tests leave pending never add to its work.
"""

from __future__ import annotations

import json
import time

import pytest
import redis

from conftest import INGEST_AUTH, unique_article, wait_for
from feeds_fixtures import stored_body

from syndicate import events
from syndicate.feeds.model import stable_id
from syndicate.store import key
from syndicate.workers.base import CHANNEL_TASKS, receipts

CHANNELS = tuple(CHANNEL_TASKS)


def _fanned_out_everywhere(event_id: str) -> bool:
    return all(any(r["subject"] == event_id for r in receipts(q)) for q in CHANNELS)


def _owed_nowhere(redis_client, event_id: str) -> bool:
    return all(redis_client.zscore(events.owed_key(c), event_id) is None for c in CHANNELS)


def test_store_and_event_log_are_written_together(redis_client):
    article = unique_article()
    result = events.ingest(article)
    event = events.get_event(result.event_id)
    assert event["type"] == "article.published"
    assert event["article"] == article
    assert redis_client.zscore(key("events:pending"), result.event_id) is not None
    logged = [e for e in events.recent_events(200) if e["id"] == result.event_id]
    assert logged and logged[0]["article_id"] == article["id"]
    assert redis_client.ttl(key("event", result.event_id)) > 29 * 86400


@pytest.mark.both_brokers
def test_reconciler_fans_out_an_event_whose_enqueue_never_happened(celery_worker, redis_client):
    # The enqueue step is "killed": the event is committed but never handed to the broker.
    result = events.ingest(unique_article())
    wait_for(lambda: result.event_id in events.pending_events(older_than=1, only=[result.event_id]),
             timeout=5, message="grace period")

    from syndicate.workers.ingest import reconcile

    reconcile.apply_async(kwargs={"event_ids": [result.event_id]})  # what beat sends every 30 s, scoped
    wait_for(lambda: _fanned_out_everywhere(result.event_id), message="fan-out after reconcile")
    wait_for(lambda: redis_client.zscore(key("events:pending"), result.event_id) is None, message="pending cleared")
    # Every channel's receipt settled what the fan-out recorded it owed.
    wait_for(lambda: _owed_nowhere(redis_client, result.event_id), message="receipts settle what is owed")


@pytest.mark.both_brokers
def test_api_accepts_while_the_broker_is_down_and_the_reconciler_recovers(api_server, celery_worker, http, monkeypatch):
    import syndicate.workers.ingest

    def broker_down(event_id):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(syndicate.workers.ingest, "enqueue_fanout", broker_down)
    article = unique_article()
    response = http.post(f"{api_server}/v1/articles", data=json.dumps(article),
                         headers={**INGEST_AUTH, "Content-Type": "application/json"})
    assert response.status_code == 202
    event_id = response.json()["event_id"]
    assert event_id in events.pending_events(older_than=0, only=[event_id])
    monkeypatch.undo()

    wait_for(lambda: event_id in events.pending_events(older_than=1, only=[event_id]), timeout=5, message="grace period")
    syndicate.workers.ingest.reconcile.apply_async(kwargs={"event_ids": [event_id]})
    wait_for(lambda: _fanned_out_everywhere(event_id), message="fan-out after broker recovery")


@pytest.mark.both_brokers
def test_fanout_of_an_expired_event_is_a_quiet_no_op(celery_worker, redis_client):
    from syndicate.workers.ingest import fanout

    redis_client.zadd(key("events:pending"), {"evt_gone": 0})
    fanout.apply_async(args=["evt_gone"])
    wait_for(lambda: redis_client.zscore(key("events:pending"), "evt_gone") is None, message="expired event dropped")
    assert _owed_nowhere(redis_client, "evt_gone")


def test_a_channel_message_lost_in_the_broker_is_redispatched_and_applied_once(deployment):
    # Only the ingest queue has a worker: the channel messages the fan-out sends wait in the broker.
    deployment.start_worker("ingest", "ingest")
    article = unique_article()
    event_id = deployment.publish(article)
    wait_for(lambda: deployment.receipt_count("ingest", event_id), message="fan-out")
    owed = deployment.key("events", "owed", "feeds")
    assert deployment.redis.zscore(owed, event_id) is not None

    # Lose the feeds message inside the broker, as a Redis restart between the pop and the
    # unacked record does.
    queue = deployment.broker_key("feeds")
    ours = [m for m in deployment.redis.lrange(queue, 0, -1) if event_id in m]
    assert len(ours) == 1
    assert deployment.redis.lrem(queue, 0, ours[0]) == 1

    deployment.start_worker("channels", "feeds,webhooks,newsletter", concurrency=2)
    for channel in ("webhooks", "newsletter"):
        wait_for(lambda: deployment.receipt_count(channel, event_id), message=f"{channel} receipt")
    assert deployment.receipt_count("feeds", event_id) == 0
    assert deployment.redis.zscore(deployment.key("feeds", "index", "all"), article["id"]) is None
    assert deployment.redis.zscore(owed, event_id) is not None

    # The reconciler (what beat runs every 30 s) re-dispatches only the channel with no receipt.
    wait_for(lambda: time.time() - deployment.redis.zscore(owed, event_id) > 1, timeout=5, message="grace")
    done = deployment.cli("reconcile")
    assert done.returncode == 0, done.stderr

    wait_for(lambda: deployment.receipt_count("feeds", event_id), message="feeds receipt after reconcile")
    assert deployment.redis.zscore(deployment.key("feeds", "index", "all"), article["id"]) is not None

    binary = redis.Redis.from_url(deployment.redis_url)  # the stored documents are gzip bytes

    def items_of_the_story() -> list[dict]:
        document = json.loads(stored_body(binary, deployment.prefix, "all", "json") or '{"items": []}')
        return [item for item in document["items"] if item["id"] == stable_id(article["id"])]

    wait_for(items_of_the_story, message="the story in the rendered main feed")
    assert len(items_of_the_story()) == 1
    assert all(deployment.redis.zscore(deployment.key("events", "owed", c), event_id) is None for c in CHANNELS)
    assert deployment.redis.hgetall(deployment.key("events:redispatched")) == {"feeds": "1"}
    for channel in CHANNELS:
        assert deployment.receipt_count(channel, event_id) == 1, channel

    # A second run finds nothing owed and sends nothing: the effect happens once.
    assert deployment.cli("reconcile").returncode == 0
    assert deployment.redis.hgetall(deployment.key("events:redispatched")) == {"feeds": "1"}


@pytest.mark.parametrize("count", [3])
def test_retract_keeps_the_log_in_order(count):
    article = unique_article()
    ids = [events.ingest(article).event_id]
    for version in range(2, count + 1):
        ids.append(events.ingest({**article, "version": version, "headline": f"Edit {version}"}).event_id)
    ids.append(events.retract(article["id"]).event_id)
    logged = [e["id"] for e in reversed(events.recent_events(500)) if e["article_id"] == article["id"]]
    assert logged == ids
    assert [events.get_event(i)["type"] for i in ids] == ["article.published", "article.updated", "article.updated", "article.retracted"]
