"""Tasks of the ``feeds`` queue: keep every feed's documents in step with the article store.

``apply_event`` places the event's article in its feeds and renders them with
single flight (see syndicate.feeds.state); the WebSub pings and the sweep for
feeds left stale by a dead worker run as their own tasks, so neither can hold
up a render.
"""

from __future__ import annotations

import logging

from celery.signals import worker_ready

from syndicate import events
from syndicate.config import get_settings
from syndicate.feeds import service, state, websub
from syndicate.store import get_redis, key

from .app import app
from .base import SyndicateTask, max_countdown

log = logging.getLogger("syndicate.workers.feeds")

BEAT_SCHEDULE = {
    "feeds-sweep": {"task": "syndicate.feeds.sweep", "schedule": 30.0},
}
# Also here, not only in app.py: imported before app.py, this module is half-loaded when app.py
# collects the schedules, and its entries would be missing.
app.conf.beat_schedule.update(BEAT_SCHEDULE)

# One flush task in the queue at a time; the flush clears this before it claims pings.
_KICK_TTL_MS = 60_000


def _kick_websub(_feed_id: str = "", _formats: list[str] | None = None) -> None:
    if get_settings().websub_hub and get_redis().set(key("feeds", "websub", "kick"), 1, nx=True, px=_KICK_TTL_MS):
        websub_flush.apply_async()


# Every countdown in this module stays at or under 60 s: the Redis broker redelivers an
# unacked ETA task once its visibility timeout passes, which would run it twice.
# (Retries follow SyndicateTask's policy: backoff capped at 30 s; websub_flush caps its own at 60 s.)
# Transient errors (the network, the store restarting) are retried; anything else is a bug or a bad
# record, and a story that cannot be rendered is already left out and dead-lettered by the render.
@app.task(name="syndicate.feeds.apply_event", base=SyndicateTask, queue_name="feeds", bind=True)
def apply_event(self, event_id: str) -> None:
    event = events.get_event(event_id)
    if event is not None:
        # The store, not the event snapshot, decides: a late or repeated event is harmless.
        service.apply_article(event["article_id"], on_changed=_kick_websub,
                              dispatch=lambda feed_id, gen: render.apply_async(args=[feed_id, False, gen]))
    self.record_receipt(event_id)


@app.task(name="syndicate.feeds.render", base=SyndicateTask, queue_name="feeds", bind=True)
def render(self, feed_id: str, mark: bool = True, gen: int | None = None) -> int:
    """Render one feed; ``mark=False`` when the sender already recorded the change (apply_event),
    ``gen`` the feed's gen after that change: nothing to do once a stored render covers it."""
    if mark:
        state.mark_changed(get_redis(), feed_id)
    elif gen is not None and service.covered(feed_id, gen):
        return 0
    return service.render_single_flight(feed_id, on_changed=_kick_websub)


@app.task(name="syndicate.feeds.websub_flush", base=SyndicateTask, queue_name="feeds", bind=True)
def websub_flush(self) -> int:
    """Ping the hub for every changed feed URL that is due; failures are rescheduled with backoff."""
    client = get_redis()
    client.delete(key("feeds", "websub", "kick"))
    hub = get_settings().websub_hub
    claims = websub.take_due(client)
    if not hub:
        for claim in claims:  # the hub setting was removed: forget what it would have been told
            websub.drop(client, claim)
        return 0
    retry_in: list[float] = []
    for claim in claims:
        delay = websub.record(client, claim, websub.ping(hub, claim.topic))
        if delay is not None:
            retry_in.append(delay)
    if retry_in:
        # Capped short: a countdown near the broker's visibility timeout would be redelivered twice.
        # Flushing early is harmless (only due topics are pinged); the 30 s sweep is the backstop.
        websub_flush.apply_async(countdown=min(min(retry_in), max_countdown()))
    return len(claims)


@app.task(name="syndicate.feeds.sweep", base=SyndicateTask, queue_name="feeds", bind=True)
def sweep(self) -> list[str]:
    """Backstop: render feeds a dead worker left stale, rewrite static files a failed write left behind,
    and flush WebSub pings that came due."""
    stale = service.sweep(on_changed=_kick_websub)
    if stale:
        # Also the main feed's first (empty) render on a new deployment, so readers can subscribe at once.
        log.warning("rendered stale or missing feeds: %s", ", ".join(stale))
    due = websub.next_due(get_redis())
    if due is not None:
        _kick_websub()
    return stale


@worker_ready.connect
def _sweep_on_start(**_kwargs) -> None:
    """A starting worker queues one sweep, so a new deployment's main feed exists before beat's first tick.

    The task goes to the feeds queue whichever worker sends it; a spare sweep is cheap and idempotent.
    """
    try:
        sweep.apply_async()
    except Exception:  # a broker hiccup at start must not stop the worker; beat sweeps anyway
        log.exception("could not queue the start-up feeds sweep")
