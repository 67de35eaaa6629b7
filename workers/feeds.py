"""Tasks of the ``feeds`` queue."""

from __future__ import annotations

from .app import app
from .base import SyndicateTask

BEAT_SCHEDULE: dict = {}


@app.task(name="syndicate.feeds.apply_event", base=SyndicateTask, queue_name="feeds", bind=True)
def apply_event(self, event_id: str) -> None:
    self.record_receipt(event_id)
