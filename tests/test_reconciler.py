"""The event log and the reconciler: a broker failure between commit and enqueue loses nothing."""

from __future__ import annotations

import json

import pytest

from conftest import INGEST_AUTH, unique_article, wait_for

from syndicate import events
from syndicate.store import key
from workers.base import receipts


def _fanned_out_everywhere(event_id: str) -> bool:
    return all(any(r["subject"] == event_id for r in receipts(q)) for q in ("feeds", "webhooks", "newsletter"))


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


def test_reconciler_fans_out_an_event_whose_enqueue_never_happened(celery_worker, redis_client):
    # The enqueue step is "killed": the event is committed but never handed to the broker.
    result = events.ingest(unique_article())
    wait_for(lambda: result.event_id in events.pending_events(older_than=1), timeout=5, message="grace period")

    from workers.ingest import reconcile

    reconcile.apply_async()  # what beat sends every 30 s, run by the real worker
    wait_for(lambda: _fanned_out_everywhere(result.event_id), message="fan-out after reconcile")
    wait_for(lambda: redis_client.zscore(key("events:pending"), result.event_id) is None, message="pending cleared")


def test_api_accepts_while_the_broker_is_down_and_the_reconciler_recovers(api_server, celery_worker, http, monkeypatch):
    import workers.ingest

    def broker_down(event_id):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(workers.ingest, "enqueue_fanout", broker_down)
    article = unique_article()
    response = http.post(f"{api_server}/v1/articles", data=json.dumps(article),
                         headers={**INGEST_AUTH, "Content-Type": "application/json"})
    assert response.status_code == 202
    event_id = response.json()["event_id"]
    assert event_id in events.pending_events(older_than=0)
    monkeypatch.undo()

    wait_for(lambda: event_id in events.pending_events(older_than=1), timeout=5, message="grace period")
    workers.ingest.reconcile.apply_async()
    wait_for(lambda: _fanned_out_everywhere(event_id), message="fan-out after broker recovery")


def test_fanout_of_an_expired_event_is_a_quiet_no_op(celery_worker, redis_client):
    from workers.ingest import fanout

    redis_client.zadd(key("events:pending"), {"evt_gone": 0})
    fanout.apply_async(args=["evt_gone"])
    wait_for(lambda: redis_client.zscore(key("events:pending"), "evt_gone") is None, message="expired event dropped")


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
