"""Tasks of the ``ingest`` queue: fan each logged event out to the channel queues.

Fan-out is cheap and decides nothing about partners or subscribers: each
channel's own task (on its own queue) does that, so a slow partner can never
delay a feed. The reconciler re-enqueues events that were logged but never
reached fan-out (the broker was down between the commit and the enqueue).
"""

from __future__ import annotations

from syndicate import events
from syndicate.config import get_settings

from .app import app
from .base import SyndicateTask

CHANNEL_TASKS = (
    "syndicate.feeds.apply_event",
    "syndicate.webhooks.dispatch_event",
    "syndicate.newsletter.stage_event",
)

BEAT_SCHEDULE = {
    "reconcile-events": {"task": "syndicate.ingest.reconcile", "schedule": 30.0},
}


def enqueue_fanout(event_id: str) -> None:
    """Hand a committed event to the ingest queue."""
    fanout.apply_async(args=[event_id])


@app.task(name="syndicate.ingest.fanout", base=SyndicateTask, queue_name="ingest", bind=True,
          autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def fanout(self, event_id: str) -> None:
    if events.get_event(event_id) is None:
        # Retention dropped it, or it never existed: nothing to fan out.
        events.mark_fanned_out(event_id)
        return
    for name in CHANNEL_TASKS:
        app.send_task(name, args=[event_id])
    events.mark_fanned_out(event_id)
    self.record_receipt(event_id)


@app.task(name="syndicate.ingest.reconcile", base=SyndicateTask, queue_name="ingest", bind=True)
def reconcile(self) -> int:
    """Re-enqueue every event logged longer ago than the grace period and not yet fanned out."""
    stuck = events.pending_events(get_settings().reconcile_after_seconds)
    for event_id in stuck:
        fanout.apply_async(args=[event_id])
    return len(stuck)
