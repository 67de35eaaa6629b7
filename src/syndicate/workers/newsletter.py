"""Tasks of the ``newsletter`` queue: stage stories, open due editions, send them.

    stage_event(event_id)       put the event's story in each matching list's pending edition
    stage_article(list, id)     stage one stored story for one list (redoes a story an edition skipped)
    tick()                      (beat) open the editions whose cron slot came, resume stalled ones
    send_edition(edition_id)    build and send one edition; any number of runs send each subscriber once
    send_confirmation(list, id) the double opt-in email

Exactly once per (edition, subscriber): an edition is keyed by its cron slot,
so a beat that fires twice opens one edition; a sending run must hold the
edition's lease, claims recipients in Redis before sending and marks each one
"committing" (checking the lease in the same Lua step) just before the final
dot of DATA. A run killed mid-send leaves its lease to expire; ``tick`` then
re-enqueues the edition and the new run sends every recipient that never got
to "committing". A recipient caught between that dot and the recording of the
server's answer is recorded "doubt" and not sent again: at most once, always;
exactly once unless a crash lands in that one round trip.
"""

from __future__ import annotations

import logging

from syndicate import events
from syndicate.errors import DeliveryError
from syndicate.ingest import RETRACTED
from syndicate.newsletter import editions, lists, service
from syndicate.newsletter.listconfig import wants_section
from syndicate.store import get_redis, key

from .app import app
from .base import TRANSIENT_ERRORS, SyndicateTask

log = logging.getLogger("syndicate.workers.newsletter")

# Redis restarting or failing over, or a network fault: try again (backoff and limits come from
# SyndicateTask). Each task is safe to repeat: staging is one hash field per story, editions are
# keyed by slot, and sending holds a lease.
RETRY = {"autoretry_for": TRANSIENT_ERRORS}

BEAT_SCHEDULE = {
    "newsletter-editions": {"task": "syndicate.newsletter.tick", "schedule": 20.0},
}
# Also here, not only in app.py: imported before app.py, this module is half-loaded when app.py
# collects the schedules, and its entries would be missing.
app.conf.beat_schedule.update(BEAT_SCHEDULE)


@app.task(name="syndicate.newsletter.stage_event", base=SyndicateTask, queue_name="newsletter", bind=True, **RETRY)
def stage_event(self, event_id: str) -> None:
    """Stage the event's story in each list that wants it; the writes and the receipt go in one round trip.

    The receipt follows the staging in the same pipeline: Redis runs it only after the
    staging commands before it, so a receipt (which settles ``events:owed``) always means
    the story is staged (a staging command Redis refused fails the task, and its dead
    letter settles the event, as before). Staging is one hash field per story: doing it
    again is harmless.
    """
    client = get_redis()
    event = events.get_event(event_id, client)
    configs = lists.all_lists(client) if event is not None else []
    with client.pipeline(transaction=False) as pipe:
        for config in configs:
            if event["type"] == RETRACTED:
                # Build time leaves retracted stories out anyway; this keeps pending small.
                pipe.hdel(key("nl", "pending", config["id"]), event["article_id"])
            elif wants_section(config, event.get("section")):
                editions.stage(config["id"], event["article_id"], event_id, pipe)
        self.queue_receipt(event_id, pipe)
        pipe.execute()


@app.task(name="syndicate.newsletter.stage_article", base=SyndicateTask, queue_name="newsletter", bind=True, **RETRY)
def stage_article(self, list_id: str, article_id: str) -> None:
    """Stage a story for a list's next edition (the dead letter of a story an edition had to skip)."""
    if any(config["id"] == list_id for config in lists.all_lists()):  # a deleted list: nothing to redo
        editions.stage(list_id, article_id, "requeued")


@app.task(name="syndicate.newsletter.tick", base=SyndicateTask, queue_name="newsletter", bind=True, **RETRY)
def tick(self) -> list[str]:
    service.prune_unconfirmed()
    due = service.open_due()
    for eid in due + [e for e in service.stalled() if e not in due]:
        send_edition.apply_async(args=[eid])
    return due


# A big list outlives the default task time limit; the lease, not the time limit,
# guards against two senders (a redelivered message finds the lease held and returns).
@app.task(name="syndicate.newsletter.send_edition", base=SyndicateTask, queue_name="newsletter", bind=True,
          time_limit=6 * 3600, soft_time_limit=6 * 3600 - 60, **RETRY)
def send_edition(self, edition_id: str) -> dict:
    try:
        return service.run_edition(edition_id)
    except service.LeaseLost as exc:
        log.warning("%s; the run holding it carries on", exc)
        return {"id": edition_id, "note": str(exc)}


@app.task(name="syndicate.newsletter.send_confirmation", base=SyndicateTask, queue_name="newsletter", bind=True,
          autoretry_for=(DeliveryError, *TRANSIENT_ERRORS), max_retries=6)
def send_confirmation(self, list_id: str, subscriber_id: str) -> None:
    service.send_confirmation(list_id, subscriber_id)
