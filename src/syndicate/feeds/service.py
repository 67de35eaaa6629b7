"""The feeds channel's use cases, composed from the index, state, render, static and websub modules.

The Celery tasks and the CLI call these; nothing here imports Celery. Where the
work must hand something on (a WebSub ping), the caller passes a callback.

Two failures stay local here. A story that cannot be rendered (a bug, a corrupt
record) is left out of its feeds and dead-lettered once per stored version, so
every other story keeps flowing. Static files that cannot be written leave the
feed served from Redis, with the error on the feed (``syndicate feeds list``)
until the sweep or the next render writes them.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable

import redis

from .. import __version__, deadletters, metrics
from ..config import Settings, get_settings
from ..store import get_redis
from . import index, state, static, websub
from .model import FORMATS, MAIN_FEED, Item, feed_spec, item_from_json
from .render import Rendered, check_item, render_items, stamp_last_modified

log = logging.getLogger("syndicate.feeds")

OnChanged = Callable[[str, list[str]], None]


def _clients() -> tuple[redis.Redis, redis.Redis]:
    return get_redis(), get_redis(decode=False)


def _skip_broken(client: redis.Redis, feed_id: str, article_id: str, raw: str, exc: Exception) -> None:
    error = f"{type(exc).__name__}: {exc}"
    if state.first_report_of_broken(client, article_id, raw):
        log.error("feed %s: skipping article %s, which cannot be rendered: %s", feed_id, article_id, error)
        # Requeueing the render retries the feed; the story joins it once its stored version renders.
        deadletters.record("feeds", error, task="syndicate.feeds.render", args=[feed_id], article_id=article_id,
                           subject=article_id, client=client)


def window_items(client: redis.Redis, feed_id: str, size: int) -> list[Item]:
    """The feed's stories as items, leaving out (and reporting) any that cannot be rendered."""
    items = []
    for article_id, raw in index.window_entries(client, feed_id, size):
        try:
            item = item_from_json(raw)
            if item is not None:
                check_item(item)
        # Whatever one story's failure is (a renderer bug, a corrupt record), it must not hold its feed.
        except Exception as exc:  # noqa: BLE001
            _skip_broken(client, feed_id, article_id, raw, exc)
            continue
        if item is not None:
            items.append(item)
    return items


def render_now(feed_id: str, settings: Settings | None = None) -> Rendered:
    """Render one feed from its current index (pure rendering over a fresh read of the store)."""
    settings = settings or get_settings()
    client = get_redis()
    spec = feed_spec(feed_id, settings, index.section_name(client, feed_id), __version__)
    items = window_items(client, feed_id, settings.feed_size)
    removed = index.removed_at(client, feed_id)
    floor = dt.datetime.fromtimestamp(removed, dt.timezone.utc).replace(microsecond=0) if removed else None
    with metrics.feed_render(feed_id):
        return render_items(spec, items, floor)


# Under a burst a feed's static files are written at least this often, though a later render is owed.
FILES_EVERY_S = 1.0


def publish(feed_id: str, rendered: Rendered, previous: dict[str, str | None], settings: Settings,
            on_changed: OnChanged | None, file_error: bool = True, files: bool = True) -> list[str]:
    """After a stored render: write changed files, queue WebSub pings; returns changed formats.

    ``file_error``: whether the feed carried a file error when the render started (if not, a
    successful write has none to clear). ``files=False``: leave the files to the render that
    follows (the stored documents, which the API serves, are current either way).
    """
    changed = [fmt for fmt, doc in rendered.documents.items() if previous.get(fmt) != doc.etag]
    if files:
        write_files(feed_id, {fmt: doc.body for fmt, doc in rendered.documents.items()}, settings, file_error)
    if changed and settings.websub_hub:
        spec = feed_spec(feed_id, settings, version=__version__)
        websub.queue(get_redis(), [spec.url(fmt) for fmt in changed])
    if changed and on_changed:
        on_changed(feed_id, changed)
    return changed


def write_files(feed_id: str, bodies: dict[str, bytes], settings: Settings, file_error: bool = True) -> bool:
    """Write a feed's static files; on failure record the error on the feed instead of raising.

    The API serves the stored bytes whatever happens here, so a full disk or a
    read-only directory must not fail the render; the sweep retries feeds that
    carry an error, and a later success clears it (``file_error=False``: the
    caller read that the feed carries none, so a success has nothing to clear).
    """
    if not settings.feed_files:
        return True  # the web hosts' mirrors (syndicate feeds mirror) write them from the store
    client = get_redis()
    spec = feed_spec(feed_id, settings, version=__version__)
    try:
        static.write_documents(settings.feed_dir, {spec.path(fmt): body for fmt, body in bodies.items()})
    except OSError as exc:
        error = f"cannot write {settings.feed_dir / spec.path('rss')[:-4]}.*: {type(exc).__name__}: {exc}"
        if state.set_file_error(client, feed_id, error):
            log.error("feed %s: %s (the API keeps serving it; files are retried by the sweep)", feed_id, error)
        return False
    if file_error and state.set_file_error(client, feed_id, None):
        log.warning("feed %s: static files written again under %s", feed_id, settings.feed_dir)
    state.files_written(client, feed_id)
    return True


def catch_up_files(settings: Settings | None = None, client: redis.Redis | None = None) -> list[str]:
    """Rewrite the static files of every feed whose last write failed, from the stored documents."""
    settings = settings or get_settings()
    client = client or get_redis()
    raw = get_redis(decode=False)
    caught_up = []
    for feed_id in state.feeds_with_file_errors(client, index.feed_ids(client)):
        bodies = {fmt: body for fmt, body in state.read_bodies(raw, feed_id, list(FORMATS)).items()
                  if body is not None}
        if bodies and write_files(feed_id, bodies, settings):
            caught_up.append(feed_id)
    return caught_up


def render_single_flight(feed_id: str, settings: Settings | None = None,
                         on_changed: OnChanged | None = None) -> int:
    """Render ``feed_id`` unless another worker already is; returns how many renders this call did.

    The caller must have called ``state.mark_changed`` first, so a render that is
    in flight elsewhere notices the change and renders once more before it lets go
    (or leaves it to a queued render task, see ``state``). A feed whose stored
    render already holds every change is not rendered again.

    The static files are fsynced only for the last render of a burst: while the
    feed changed again during a render (a later render is owed and writes them),
    they are skipped, unless they were last written ``FILES_EVERY_S`` ago.
    """
    settings = settings or get_settings()
    client = get_redis()
    token = state.try_lock(client, feed_id)
    if token is None:
        return 0
    renders = 0
    while True:
        # Read under the lock: no other render of this feed can store between this read and ours.
        start = state.render_start(client, feed_id, tuple(FORMATS))
        gen, stored = start.gen, start.validators
        if start.stored_gen is not None and start.stored_gen >= gen:
            _unlock_quietly(client, feed_id, token)  # a render since the change was made already holds it
            return renders
        previous = {fmt: etag for fmt, (etag, _lm) in stored.items()}
        try:
            rendered = stamp_last_modified(render_now(feed_id, settings), stored,
                                           dt.datetime.now(dt.timezone.utc))
        except BaseException:
            # Leave the feed to the retry or the sweep at once rather than after the lock's TTL.
            _unlock_quietly(client, feed_id, token)
            raise
        if not state.store(client, feed_id, token, gen, rendered):
            log.warning("lost the render lock of %s; its new holder renders it", feed_id)
            return renders
        renders += 1
        files = (not settings.feed_files or start.file_error or time.time() - start.files_at >= FILES_EVERY_S
                 or not state.gen_moved(client, feed_id, gen))
        publish(feed_id, rendered, previous, settings, on_changed, start.file_error, files)
        outcome = state.release(client, feed_id, token, gen)
        if outcome != 0:
            return renders


def _unlock_quietly(client: redis.Redis, feed_id: str, token: str) -> None:
    try:
        state.unlock(client, feed_id, token)
    except Exception:  # noqa: BLE001 - the store may be what failed; the lock's TTL covers it then
        log.warning("could not release the render lock of %s", feed_id)


def apply_article(article_id: str, settings: Settings | None = None, on_changed: OnChanged | None = None,
                  dispatch: Callable[[str, int], None] | None = None, render_here: bool = True) -> set[str]:
    """Bring every feed up to date with one article's stored state; returns the feeds it touched.

    With ``dispatch``, one touched feed renders here and the others are handed
    to it (the worker sends them as render tasks) before that render starts, so
    a story's section feed and the main feed render side by side on two workers:
    the story is in all its feeds after one render, not two. ``dispatch`` gets
    the feed and its ``gen`` after this change: a render that stored that
    ``gen`` or a later one already holds the story (``covered``). The feed kept
    here is a section's: the main feed changes with every story, so when the
    queue backs up, its handed-on renders are the ones that collapse into one.
    With ``render_here=False`` every touched feed is handed on (the workers'
    path: the event only updates the indexes, and queued renders collapse).
    """
    settings = settings or get_settings()
    client = get_redis()
    touched = sorted(index.sync_article(client, article_id, settings.feed_size))
    gens = {feed_id: state.mark_changed(client, feed_id) for feed_id in touched}
    # Sorted: the main feed ("all") comes first, so the feed kept here is a section's.
    here = touched if dispatch is None else touched[-1:] if render_here else []
    for feed_id in touched[:len(touched) - len(here)]:
        dispatch(feed_id, gens[feed_id])
    for feed_id in here:
        render_single_flight(feed_id, settings, on_changed)
    return set(touched)


def covered(feed_id: str, gen: int) -> bool:
    """True if a stored render of ``feed_id`` already includes the change that made its ``gen``.

    A render reads ``gen`` before it reads the feed's window, and every change is
    indexed before its ``gen`` is bumped; so a stored render of that ``gen`` or a
    later one holds it. A render task queued behind a burst of changes to its
    feed is then answered by the first of them, and the rest cost one read each.
    """
    return int(get_redis().hget(state.doc_key(feed_id), "gen") or 0) >= gen


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
    catch_up_files(settings)
    return stale


__all__ = ["apply_article", "catch_up_files", "covered", "ensure_main_feed", "rebuild", "render_now",
           "render_single_flight", "stale_feeds", "sweep", "window_items", "write_files", "MAIN_FEED"]
