"""Tasks of the ``webhooks`` queue."""

from __future__ import annotations

from .app import app
from .base import SyndicateTask

BEAT_SCHEDULE: dict = {}


@app.task(name="syndicate.webhooks.dispatch_event", base=SyndicateTask, queue_name="webhooks", bind=True)
def dispatch_event(self, event_id: str) -> None:
    self.record_receipt(event_id)
