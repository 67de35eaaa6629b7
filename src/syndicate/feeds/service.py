"""The feeds channel's use cases, composed from the index, state, render, static and websub modules.

The Celery tasks and the CLI call these; nothing here imports Celery. Where the
work must hand something on (a WebSub ping), the caller passes a callback.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable

import redis

from .. import __version__
from ..config import Settings, get_settings
from ..store import get_redis
from . import index, state, static, websub
from .model import FORMATS, MAIN_FEED, feed_spec, item_from_json
from .render import Rendered, render_items, stamp_last_modified

log = logging.getLogger("syndicate.feeds")

OnChanged = Callable[[str, list[str]], None]


def _clients() -> tuple[redis.Redis, redis.Redis]:
    return get_redis(), get_redis(decode=False)


def render_now(feed_id: str, settings: Settings | None = None) -> Rendered:
    """Render one feed from its current index (pure rendering over a fresh read of the store)."""
    settings = settings or get_settings()
    client = get_redis()
    spec = feed_spec(feed_id, settings, index.section_name(client, feed_id), __version__)
    items = [item for item in map(item_from_json, index.window_json(client, feed_id, settings.feed_size)) if item]
    removed = index.removed_at(client, feed_id)
    floor = dt.datetime.fromtimestamp(removed, dt.timezone.utc).replace(microsecond=0) if removed else None
    return render_items(spec, items, floor)


def publish(feed_id: str, rendered: Rendered, previous: dict[str, str | None], settings: Settings,
            on_changed: OnChanged | None) -> list[str]:
    """After a stored render: write changed files, queue WebSub pings; returns changed formats."""
    changed = [fmt for fmt, doc in rendered.documents.items() if previous.get(fmt) != doc.etag]
    spec = feed_spec(feed_id, settings, version=__version__)
    files = {spec.path(fmt): doc.body for fmt, doc in rendered.documents.items()}
    try:
        static.write_documents(settings.feed_dir, files)
    except OSError:
        # The API still serves the stored bytes; the next render writes the files again.
        log.exception("could not write feed files for %s under %s", feed_id, settings.feed_dir)
    if changed and settings.websub_hub:
        websub.queue(get_redis(), [spec.url(fmt) for fmt in changed])
    if changed and on_changed:
        on_changed(feed_id, changed)
    return changed


def render_single_flight(feed_id: str, settings: Settings | None = None,
                         on_changed: OnChanged | None = None) -> int:
    """Render ``feed_id`` unless another worker already is; returns how many renders this call did.

    The caller must have called ``state.mark_changed`` first, so a render that is
    in flight elsewhere notices the change and renders once more before it lets go.
    """
    settings = settings or get_settings()
    client = get_redis()
    token = state.try_lock(client, feed_id)
    if token is None:
        return 0
    renders = 0
    while True:
        gen = state.current_gen(client, feed_id)
        # Read under the lock: no other render of this feed can store between this read and ours.
        stored = state.validators(client, feed_id, tuple(FORMATS))
        previous = {fmt: etag for fmt, (etag, _lm) in stored.items()}
        rendered = stamp_last_modified(render_now(feed_id, settings), stored,
                                       dt.datetime.now(dt.timezone.utc))
        if not state.store(client, feed_id, token, gen, rendered):
            log.warning("lost the render lock of %s; its new holder renders it", feed_id)
            return renders
        renders += 1
        publish(feed_id, rendered, previous, settings, on_changed)
        outcome = state.release(client, feed_id, token, gen)
        if outcome != 0:
            return renders


def apply_article(article_id: str, settings: Settings | None = None, on_changed: OnChanged | None = None,
                  dispatch: Callable[[str], None] | None = None) -> set[str]:
    """Bring every feed up to date with one article's stored state; returns the feeds it touched.

    With ``dispatch``, the first touched feed renders here and the others are
    handed to it (the worker sends them as render tasks), so a story's section
    feed and the main feed render side by side on two workers.
    """
    settings = settings or get_settings()
    client = get_redis()
    touched = sorted(index.sync_article(client, article_id, settings.feed_size))
    for feed_id in touched:
        state.mark_changed(client, feed_id)
    for n, feed_id in enumerate(touched):
        if dispatch is not None and n > 0:
            dispatch(feed_id)
        else:
            render_single_flight(feed_id, settings, on_changed)
    return set(touched)


def rebuild(feed_ids: Iterable[str] | None = None, settings: Settings | None = None,
            on_changed: OnChanged | None = None, progress: Callable[[str], None] | None = None) -> list[str]:
    """Re-index every feed from the article store and render it (``syndicate feeds rebuild``)."""
    settings = settings or get_settings()
    client = get_redis()
    # Section feeds are discovered from the store too, so a wiped feed state is rebuilt whole.
    index.discover_sections(client)
    targets = list(feed_ids) if feed_ids is not None else index.feed_ids(client)
    for feed_id in targets:
        index.rebuild_index(client, feed_id, settings.feed_size)
        state.mark_changed(client, feed_id)
        render_single_flight(feed_id, settings, on_changed)
        if progress:
            progress(feed_id)
    if MAIN_FEED not in targets:
        ensure_main_feed(settings, on_changed)
    return targets


def ensure_main_feed(settings: Settings | None = None, on_changed: OnChanged | None = None) -> bool:
    """Render the main feed if it was never rendered; True if this call rendered it.

    A new deployment serves ``/feeds/all.*`` as a valid empty feed from the start,
    so readers can subscribe before the first story. The worker side does it (the
    periodic sweep, ``syndicate feeds rebuild``); the API still never renders.
    Section feeds appear with their first story: an unknown section stays 404.
    """
    client = get_redis()
    if client.hexists(state.doc_key(MAIN_FEED), "gen"):
        return False
    state.mark_changed(client, MAIN_FEED)
    return render_single_flight(MAIN_FEED, settings, on_changed) > 0


def stale_feeds(client: redis.Redis | None = None) -> list[str]:
    """Feeds whose last stored render is older than their last change and that nobody is rendering."""
    client = client or get_redis()
    stale = []
    for feed_id in index.feed_ids(client):
        rendered = client.hget(state.doc_key(feed_id), "gen")
        if int(rendered or 0) < state.current_gen(client, feed_id) and not client.exists(state.lock_key(feed_id)):
            stale.append(feed_id)
    return stale


def sweep(settings: Settings | None = None, on_changed: OnChanged | None = None) -> list[str]:
    """Render any feed left stale by a worker that died holding its lock, and a missing main feed."""
    stale = stale_feeds()
    for feed_id in stale:
        render_single_flight(feed_id, settings, on_changed)
    if MAIN_FEED not in stale and ensure_main_feed(settings, on_changed):
        stale.append(MAIN_FEED)
    return stale


__all__ = ["apply_article", "ensure_main_feed", "rebuild", "render_now", "render_single_flight", "stale_feeds", "sweep", "MAIN_FEED"]
