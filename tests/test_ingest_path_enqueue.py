"""``enqueue_fanout`` sends the message ``fanout.apply_async`` sends, on both brokers (issue 12).

It builds the message with Celery's own steps but keeps a producer per pooled connection; these
tests hold it to apply_async's message, to a real worker consuming it, and to a connection that
broke between two sends.
"""

from __future__ import annotations

import pytest
from celery.signals import before_task_publish

from conftest import unique_article, wait_for
from syndicate import events
from syndicate.store import key
from syndicate.workers.app import app
from syndicate.workers.ingest import enqueue_fanout, fanout

pytestmark = pytest.mark.both_brokers


def _sent(send) -> dict:
    """What one send hands Celery's publish step, its task id left out."""
    seen: list[dict] = []

    def capture(**kwargs) -> None:
        seen.append(kwargs)

    before_task_publish.connect(capture, weak=False)
    try:
        send()
    finally:
        before_task_publish.disconnect(capture)
    [sent] = seen
    task_id = sent["headers"]["id"]
    headers = {k: (None if v == task_id else v) for k, v in sent["headers"].items()}
    properties = {k: (None if v == task_id else v) for k, v in sent["properties"].items()}
    declared = [(q.name, q.exchange.name, q.exchange.type, q.routing_key, q.queue_arguments) for q in sent["declare"]]
    return {"body": sent["body"], "headers": headers, "properties": properties, "declare": declared,
            "exchange": sent["exchange"], "routing_key": sent["routing_key"], "retry_policy": sent["retry_policy"]}


def test_the_message_is_the_one_apply_async_sends(broker, celery_app):
    # An event never logged: whichever worker takes these messages later fans out nothing.
    event_id = events.new_event_id()
    by_apply_async = _sent(lambda: fanout.apply_async(args=[event_id]))
    by_enqueue = _sent(lambda: enqueue_fanout(event_id))
    again = _sent(lambda: enqueue_fanout(event_id))  # the kept producer and bound queue
    assert by_enqueue == by_apply_async
    assert again == by_apply_async
    assert by_apply_async["headers"]["task"] == "syndicate.ingest.fanout"
    assert by_apply_async["routing_key"] == "ingest" and by_apply_async["body"][0] == [event_id]


def test_a_worker_fans_out_what_enqueue_fanout_sent(broker, celery_worker, redis_client):
    ids = []
    for _ in range(3):
        result = events.ingest(unique_article())
        enqueue_fanout(result.event_id)
        ids.append(result.event_id)
    wait_for(lambda: all(redis_client.zscore(key("events:pending"), e) is None for e in ids),
             message="the worker's fan-out of every event")


def test_a_send_after_the_connection_broke_still_arrives(broker, celery_worker, redis_client):
    first = events.ingest(unique_article())
    enqueue_fanout(first.event_id)
    # Break every idle pooled connection under its kept producer: the next send must reconnect.
    with app.pool.acquire(block=True) as connection:
        assert connection.__dict__.get("_syndicate_fanout") is not None
        connection.collect()
    second = events.ingest(unique_article())
    enqueue_fanout(second.event_id)
    wait_for(lambda: all(redis_client.zscore(key("events:pending"), e) is None
                         for e in (first.event_id, second.event_id)),
             message="the fan-out of the event sent after the break")
