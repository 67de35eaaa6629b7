"""Webhooks through real Celery workers on the real broker: publish -> dispatch -> signed POST."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from conftest import INGEST_AUTH, unique_article, wait_for
from syndicate import events
from syndicate.config import get_settings
from syndicate.webhooks import deliveries
from webhooks_fixtures import Answer, Sink, partner, sinks, verify  # noqa: F401  (fixtures)
from syndicate.workers.base import receipts
from syndicate.workers.ingest import enqueue_fanout

pytestmark = pytest.mark.both_brokers


def publish(section: str) -> str:
    result = events.ingest(unique_article(section=section))
    enqueue_fanout(result.event_id)
    return result.event_id


def bodies(sink: Sink, secret: str) -> list[dict]:
    return [verify(secret, r) for r in sink.requests()]


def test_published_story_reaches_the_partner_signed(api_server, celery_worker, http, sinks, partner):
    sink = sinks()
    sec = f"World {uuid.uuid4().hex[:6]}"
    _name, secret = partner(sink.url, sections=[sec])
    article = unique_article(section=sec)
    response = http.post(f"{api_server}/v1/articles", data=json.dumps(article),
                         headers={**INGEST_AUTH, "Content-Type": "application/json"})
    assert response.status_code == 202, response.text
    event_id = response.json()["event_id"]
    wait_for(lambda: sink.count() == 1, message="the partner's webhook")
    body = verify(secret, sink.requests()[0])
    assert body["data"]["id"] == article["id"] and body["type"] == "article.published"
    assert any(r["subject"] == event_id for r in receipts("webhooks"))
    [delivery_id] = deliveries.ids_of_event(event_id)
    wait_for(lambda: deliveries.get(delivery_id)["status"] == "succeeded", message="delivery logged as succeeded")


def test_redelivered_event_never_doubles_a_delivery(celery_worker, celery_app, sinks, partner):
    sink = sinks()
    sec = f"Dup {uuid.uuid4().hex[:6]}"
    partner(sink.url, sections=[sec])
    event_id = publish(sec)
    # acks_late redelivery and the reconciler can hand the same event over again
    celery_app.send_task("syndicate.webhooks.dispatch_event", args=[event_id])
    celery_app.send_task("syndicate.webhooks.dispatch_event", args=[event_id])
    wait_for(lambda: sum(r["subject"] == event_id for r in receipts("webhooks")) >= 3, message="three dispatches")
    [delivery_id] = deliveries.ids_of_event(event_id)
    wait_for(lambda: deliveries.get(delivery_id)["status"] == "succeeded", message="delivery")
    assert deliveries.get(delivery_id)["attempts"] == "1"
    assert sink.count() == 1


def test_hanging_partner_delays_neither_other_partners_nor_feeds(celery_worker, celery_app, sinks, partner):
    hanging, fast = sinks(Answer(hang=True)), sinks()
    sec = f"Iso {uuid.uuid4().hex[:6]}"
    _h, h_secret = partner(hanging.url, sections=[sec])
    _f, f_secret = partner(fast.url, sections=[sec])
    limit = get_settings().webhook_partner_concurrency
    count = limit + 2
    event_ids = []
    for i in range(count):
        event_ids.append(publish(sec))
        # Each story reaches the fast partner and the feeds queue while the hanging partner still holds its answer.
        wait_for(lambda: fast.count() == i + 1, message=f"fast partner gets story {i + 1}")
        wait_for(lambda: any(r["subject"] == event_ids[-1] for r in receipts("feeds")), message="feeds receipt")
        assert hanging.inflight >= 1
    assert [b["data"]["section"] for b in bodies(fast, f_secret)] == [sec] * count
    # The hanging partner holds at most its share of attempt threads; the rest wait in the schedule.
    assert hanging.max_inflight == limit
    waiting = [d for e in event_ids for d in deliveries.ids_of_event(e) if deliveries.get(d)["partner"] == _h]
    assert len(waiting) == count
    hanging.release()

    def all_delivered() -> bool:
        celery_app.send_task("syndicate.webhooks.drain")  # what beat does every second
        return all(deliveries.get(d)["status"] == "succeeded" for d in waiting)

    wait_for(all_delivered, timeout=30, interval=0.5, message="the hanging partner's deliveries after release")
    assert sorted(r.headers["webhook-id"] for r in hanging.requests()) == sorted(waiting)
    for request in hanging.requests():
        verify(h_secret, request)


def test_beat_drains_the_schedule_every_second(celery_app):
    entry = celery_app.conf.beat_schedule["webhooks-drain"]
    assert entry["task"] == "syndicate.webhooks.drain" and entry["schedule"] <= 1.0
    assert celery_app.conf.beat_schedule["webhooks-prune"]["task"] in celery_app.tasks
    assert entry["task"] in celery_app.tasks


def test_drain_task_sends_a_due_retry(celery_worker, celery_app, sinks, partner):
    sink = sinks().answer(Answer(500))
    sec = f"Drain {uuid.uuid4().hex[:6]}"
    _name, secret = partner(sink.url, sections=[sec])
    event_id = publish(sec)
    wait_for(lambda: sink.count() == 1, message="first attempt")
    [delivery_id] = deliveries.ids_of_event(event_id)
    wait_for(lambda: deliveries.get(delivery_id)["status"] == "pending" and deliveries.due_at(delivery_id),
             message="the retry in the schedule")
    assert deliveries.due_at(delivery_id) > time.time()  # 5 s ± 20% away: it waits in Redis, not in Celery

    def drained() -> bool:
        celery_app.send_task("syndicate.webhooks.drain")  # what beat does every second
        return sink.count() == 2

    wait_for(drained, timeout=20, interval=0.5, message="the retry sent by the drain task")
    assert sink.requests()[1].headers["webhook-id"] == delivery_id
    verify(secret, sink.requests()[1])
