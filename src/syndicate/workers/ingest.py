"""Tasks of the ``ingest`` queue: fan each logged event out to the channel queues, reconcile.

Fan-out is cheap and decides nothing about partners or subscribers: each
channel's own task (on its own queue) does that, so a slow partner can never
delay a feed. In one step it marks the event fanned out and records that each
channel owes a receipt for it; only then does it send the channel tasks.

The reconciler (beat, every 30 s) is the backstop for both halves: it
re-enqueues events that were logged but never reached fan-out (the broker was
down between the commit and the enqueue), and re-dispatches a channel that has
no receipt for an event after the grace (its message was lost inside the broker,
for example by a Redis restart between the pop and the unacked record). Channel
tasks are idempotent per event id, so a re-dispatch of a message that was only
slow is harmless.
"""

from __future__ import annotations

import logging
import uuid

from kombu import Queue

from syndicate import events, metrics, retention
from syndicate.config import get_settings
from syndicate.queues import queue_depths
from syndicate.store import get_redis, key

from .app import app, collect_dead_letters, release_delayed
from .base import CHANNEL_TASKS, SyndicateTask

log = logging.getLogger("syndicate.workers.ingest")

BEAT_SCHEDULE = {
    "reconcile-events": {"task": "syndicate.ingest.reconcile", "schedule": 30.0},
    "trim-bodies": {"task": "syndicate.ingest.trim_bodies", "schedule": 3600.0},
}
# Also here, not only in app.py: imported before app.py, this module is half-loaded when app.py
# collects the schedules, and its entries would be missing.
app.conf.beat_schedule.update(BEAT_SCHEDULE)
if get_settings().broker_is_amqp:
    # RabbitMQ only: delayed sends wait in the store's schedule, dead-lettered messages become dead letters.
    BEAT_SCHEDULE["broker-upkeep"] = {"task": "syndicate.ingest.broker_upkeep", "schedule": 1.0}

# Work per reconciler run is bounded: a backlog is worked off over several runs instead of
# flooding the queues at once (each run handles at most this many events per set).
RECONCILE_BATCH = 500
# Longer than any run takes, shorter than beat's 30 s period, so a crashed run never blocks the next.
RECONCILE_LOCK_SECONDS = 25


def enqueue_fanout(event_id: str, queue: Queue | str = "ingest") -> None:
    """Hand a committed event to the ingest queue (``queue``: another, for a benchmark).

    The message is ``fanout.apply_async``'s, built and sent by the same Celery steps (the publish
    signals, so tracing, and the publish retry policy apply), minus what cost the API more than the
    send itself: apply_async's per-call merging of options and routing, the producer pool's revival
    of a producer's connection on every acquire, and kombu binding a fresh copy of an unbound queue
    on every publish. A producer, with the queues bound to its channel, is kept on each pooled
    connection instead (a fork or another broker replaces the pool, and with it those).
    """
    message = app.amqp.create_task_message(
        str(uuid.uuid4()), fanout.name, [event_id], {}, reply_to=app.thread_oid, time_limit=fanout.time_limit,
        soft_time_limit=fanout.soft_time_limit, ignore_result=fanout.ignore_result,
        argsrepr=repr([event_id]), kwargsrepr="{}")
    with app.pool.acquire(block=True, timeout=app.conf.broker_pool_acquire_timeout) as connection:
        kept = connection.__dict__.get("_syndicate_fanout")
        if kept is None:
            kept = connection.__dict__["_syndicate_fanout"] = (app.amqp.Producer(connection, auto_declare=False), {})
        producer, bound = kept
        name = queue if isinstance(queue, str) else queue.name
        target = bound.get(name)
        if target is None or target.channel is not producer.channel:  # new, or revived after a reconnect
            target = bound[name] = (app.amqp.queues[name] if isinstance(queue, str) else queue).bind(producer.channel)
        app.amqp.send_task_message(producer, fanout.name, message, queue=target)


@app.task(name="syndicate.ingest.fanout", base=SyndicateTask, queue_name="ingest", bind=True)
def fanout(self, event_id: str) -> None:
    # Owed first, sent second: a crash in between leaves receipts owed, which the reconciler
    # re-dispatches; the other order could leave a lost message with nothing owed. The fan-out's
    # own receipt is written in the same step: from then on the event is the channels' to finish.
    if not events.fan_out(event_id, tuple(CHANNEL_TASKS), self.receipt(event_id)):
        return  # retention dropped it, or it never existed: nothing to fan out
    # One producer, and on Redis one round trip for the three messages (kombu's publish batch; a
    # broker without batches, RabbitMQ, publishes each at once with its confirm as before).
    with app.producer_or_acquire() as producer, producer.batch():
        for name in CHANNEL_TASKS.values():
            app.send_task(name, args=[event_id], producer=producer)


@app.task(name="syndicate.ingest.reconcile", base=SyndicateTask, queue_name="ingest", bind=True)
def reconcile(self, event_ids: list[str] | None = None) -> int:
    """Re-enqueue stuck fan-outs and re-dispatch channels with no receipt after the grace.

    ``event_ids`` limits the run to those events (an operator's one-off, or a test that must
    not touch other tests' events); beat passes none. Returns how many tasks it sent.
    """
    settings = get_settings()
    grace = settings.reconcile_after_seconds
    client = get_redis()
    lock = key("reconcile", "lock")
    # One run at a time: beat and an operator's `syndicate reconcile` would otherwise re-send the same events.
    if not client.set(lock, self.request.id or "cli", nx=True, ex=RECONCILE_LOCK_SECONDS):
        log.info("another reconcile run is in progress; skipping this one")
        return 0
    try:
        return _reconcile(grace, event_ids)
    finally:
        client.delete(lock)


def _reconcile(grace: float, event_ids: list[str] | None) -> int:
    # A queue that still holds messages may still hold the event's: under a backlog longer than the
    # grace, re-sending would only double the backlog. A lost message is re-sent once the queue drains.
    depths = queue_depths()

    def backlog(queue: str) -> int:
        return depths[queue]

    sent = 0
    if backlog("ingest") == 0:
        stuck = events.pending_events(grace, limit=RECONCILE_BATCH, only=event_ids)
        for event_id in stuck:
            fanout.apply_async(args=[event_id])
        metrics.reconciler_reenqueued(len(stuck))
        sent += len(stuck)
    for channel, task in CHANNEL_TASKS.items():
        if backlog(channel):
            continue
        owed = events.owed_events(channel, grace, limit=RECONCILE_BATCH, only=event_ids)
        for event_id in owed:
            app.send_task(task, args=[event_id])
        events.note_redispatched(channel, owed)
        if owed:
            log.warning("re-dispatched %d event(s) to %s with no receipt after %ss", len(owed), channel, grace)
        sent += len(owed)
    return sent


@app.task(name="syndicate.ingest.trim_bodies", base=SyndicateTask, queue_name="ingest", bind=True)
def trim_bodies(self, older_than: float | None = None, article_ids: list[str] | None = None,
                editions_older_than: float | None = None) -> dict[str, int]:
    """Let go of what nothing needs any more (beat, hourly; see syndicate.retention): the bodies of old
    stories, and the per-recipient records of editions sent a while ago.

    ``older_than`` (seconds) defaults to the event retention; ``article_ids`` limits the run to those stories;
    ``editions_older_than`` (seconds) defaults to SYNDICATE_NEWSLETTER_COMPACT_AFTER_HOURS.
    """
    client = get_redis()
    lock = key("retention", "lock")
    # One run at a time; a run is bounded by the archive's size, so the lock outlives any run but a crashed one.
    if not client.set(lock, self.request.id or "cli", nx=True, ex=3000):
        log.info("another retention run is in progress; skipping this one")
        return {}
    try:
        # Well inside the task's hard time limit: a backlog (the first run after an upgrade) takes several runs.
        budget = get_settings().task_time_limit * 0.5
        counts = retention.trim_bodies(older_than, article_ids, client, budget=budget)
        if article_ids is None:
            compacted = retention.compact_editions(editions_older_than, client)
            counts.update(editions_compacted=compacted["editions"], recipient_records_dropped=compacted["records"])
        return counts
    finally:
        client.delete(lock)


@app.task(name="syndicate.ingest.broker_upkeep", base=SyndicateTask, queue_name="ingest", bind=True)
def broker_upkeep(self) -> int:
    """RabbitMQ broker (beat, every second): send the delayed calls that are due, and record each
    message the broker dead-lettered at its delivery limit as a dead letter. Returns how many."""
    if not get_settings().broker_is_amqp:
        return 0
    return release_delayed(app) + collect_dead_letters(app)
