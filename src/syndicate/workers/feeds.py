"""Tasks of the ``feeds`` queue: keep every feed's documents in step with the article store.

``apply_event`` places the event's article in its feeds and asks for their
renders: at most one render task per feed waits in the queue, so a burst of
events costs a few renders, not one each; renders are single flight (see
syndicate.feeds.state). The WebSub pings and the sweep for feeds left stale by
a dead worker run as their own tasks, so neither can hold up a render.
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
        # The receipt below then means: the story is in its feeds' indexes and a render of each is owed
        # (the feed's gen moved; a queued task, a running render or the sweep stores it).
        owed: list[str] = []
        service.apply_article(event["article_id"], on_changed=_kick_websub,
                              dispatch=lambda feed_id, _gen: owed.append(feed_id), render_here=False)
        _request_renders(owed)
    self.record_receipt(event_id)


def _request_renders(feed_ids: list[str]) -> None:
    """Ask for a render of each feed unless one is already owed (a queued task reads the feed when it starts).

    The last feed (a story's section; the main feed comes first) renders here when nothing
    waits for it, sparing it the trip through the queue while the queue is idle; the others
    are sent first, so they render side by side on other workers. A change made during that
    render is left to one task queued after it, behind the burst's other events.
    """
    client = get_redis()
    here = feed_ids[-1] if feed_ids and state.request_render(client, feed_ids[-1]) else None
    for feed_id in feed_ids[:-1]:
        if state.request_render(client, feed_id):
            _send_render(client, feed_id)
    if here is None:
        return
    try:
        service.render_single_flight(here, on_changed=_kick_websub)
    except BaseException:
        client.delete(state.queued_key(here))  # the retry or the sweep renders it
        raise
    if not state.settle_request(client, here):
        _send_render(client, here)


def _send_render(client, feed_id: str) -> None:
    try:
        render.apply_async(args=[feed_id, False])
    except BaseException:
        client.delete(state.queued_key(feed_id))  # not queued after all: the retry asks again
        raise


@app.task(name="syndicate.feeds.render", base=SyndicateTask, queue_name="feeds", bind=True)
def render(self, feed_id: str, mark: bool = True) -> int:
    """Render one feed; ``mark=False`` when the sender already recorded the change (apply_event).

    Such a task was queued by ``state.request_render``: it takes the request first, so a change
    from now on queues another task, then renders whatever the feed holds by then, unless the
    stored render is already current.
    """
    client = get_redis()
    if mark:
        state.mark_changed(client, feed_id)
    else:
        state.take_request(client, feed_id)
        if state.up_to_date(client, feed_id):
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
