"""Tasks of the ``newsletter`` queue."""

from __future__ import annotations

from .app import app
from .base import SyndicateTask

BEAT_SCHEDULE: dict = {}


@app.task(name="syndicate.newsletter.stage_event", base=SyndicateTask, queue_name="newsletter", bind=True)
def stage_event(self, event_id: str) -> None:
    self.record_receipt(event_id)
