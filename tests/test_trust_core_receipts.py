"""What a channel owes after fan-out is settled by its receipt, or by its dead letter (issue 8, class 8)."""

from __future__ import annotations

from syndicate import deadletters, events
from syndicate.store import key
from syndicate.workers.app import app
from syndicate.workers.base import CHANNEL_TASKS


def _owed(redis_client, event_id: str) -> set[str]:
    return {c for c in CHANNEL_TASKS if redis_client.zscore(events.owed_key(c), event_id) is not None}


def test_fanout_marks_every_channel_owed_and_the_event_no_longer_pending(redis_client):
    event_id = events.new_event_id()
    redis_client.zadd(key("events:pending"), {event_id: 1})
    events.mark_fanned_out(event_id, tuple(CHANNEL_TASKS))
    assert redis_client.zscore(key("events:pending"), event_id) is None
    assert _owed(redis_client, event_id) == set(CHANNEL_TASKS)
    for channel in CHANNEL_TASKS:
        events.settle(channel, event_id)


def test_a_dead_lettered_channel_task_settles_its_channel_and_no_other(redis_client):
    event_id = events.new_event_id()
    events.mark_fanned_out(event_id, tuple(CHANNEL_TASKS))
    error = ValueError("a story the feeds cannot take")
    # Celery calls this hook when the channel task failed for good.
    app.tasks[CHANNEL_TASKS["feeds"]].on_failure(error, "task-1", [event_id], {}, None)
    assert _owed(redis_client, event_id) == {"webhooks", "newsletter"}
    letter = next(d for d in deadletters.listing(50) if d["task_id"] == "task-1")
    assert letter["channel"] == "feeds" and letter["args"] == [event_id]

    # Another task of the same queue failing with the same argument settles nothing.
    app.tasks["syndicate.feeds.render"].on_failure(error, "task-2", [event_id], {}, None)
    assert _owed(redis_client, event_id) == {"webhooks", "newsletter"}
    for channel in CHANNEL_TASKS:
        events.settle(channel, event_id)


def test_a_channel_task_that_outlived_its_retries_in_an_outage_stays_owed(redis_client):
    # Retries ran out while the store was away: the reconciler must still redo the event once
    # the store is back, so the dead letter does not settle it (a requeue would do the same work).
    import redis

    event_id = events.new_event_id()
    events.mark_fanned_out(event_id, tuple(CHANNEL_TASKS))
    outage = redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
    app.tasks[CHANNEL_TASKS["newsletter"]].on_failure(outage, "task-3", [event_id], {}, None)
    assert _owed(redis_client, event_id) == set(CHANNEL_TASKS)
    assert any(d["task_id"] == "task-3" for d in deadletters.listing(50))
    for channel in CHANNEL_TASKS:
        events.settle(channel, event_id)


def test_redispatch_restarts_the_grace_only_of_events_still_owed(redis_client):
    owed, settled = events.new_event_id(), events.new_event_id()
    events.mark_fanned_out(owed, ("webhooks",))
    redis_client.zadd(events.owed_key("webhooks"), {owed: 1})  # fanned out long ago
    events.note_redispatched("webhooks", [owed, settled])
    assert redis_client.zscore(events.owed_key("webhooks"), owed) > 1
    assert redis_client.zscore(events.owed_key("webhooks"), settled) is None  # its receipt came first
    assert events.owed_events("webhooks", older_than=60, only=[owed, settled]) == []
    events.settle("webhooks", owed)
