"""Render every format of one feed from plain article dicts (pure).

``render_feed`` (article dicts) and ``render_items`` (prebuilt items, the workers' path) window the
articles, dates the feed from its own content and returns the bytes of each
format with a content-hash ETag, so an unchanged state yields unchanged ETags
and readers never see phantom changes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import hashlib
from typing import Any

from .jsonfeed import item_bytes, json_parts, render_json
from .model import EPOCH, FORMATS, FeedSpec, Item, feed_updated, window, window_of_items
from .xmlfeeds import atom_parts, entry_bytes, render_atom, render_rss, rss_parts

RENDERERS = {"rss": render_rss, "atom": render_atom, "json": render_json}
# Each format as its pieces (the feed's own head and tail around the cached per-item fragments).
PARTS = {"rss": rss_parts, "atom": atom_parts, "json": json_parts}


@dataclasses.dataclass(frozen=True)
class Document:
    fmt: str
    body: bytes
    etag: str
    last_modified: str  # an HTTP-date
    # The pieces ``body`` was joined from (head, per-item fragments, tail), for ``state.compress_parts``.
    parts: tuple[bytes, ...] = dataclasses.field(default=(), repr=False, compare=False)

    @property
    def content_type(self) -> str:
        return FORMATS[self.fmt][1]


def check_item(item: Item) -> None:
    """Render one item's entry in every format, raising whatever a feed render of it would raise.

    The entries are memoised per item, so the feed render that follows reuses
    this work: checking each story first costs nothing and lets one story that
    cannot be rendered be left out instead of failing its whole feed.
    """
    entry_bytes("rss", item)
    entry_bytes("atom", item)
    item_bytes(item)


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def http_date(value: dt.datetime) -> str:
    return email.utils.format_datetime(value.astimezone(dt.timezone.utc), usegmt=True)


@dataclasses.dataclass(frozen=True)
class Rendered:
    feed_id: str
    updated: dt.datetime
    item_ids: tuple[str, ...]
    documents: dict[str, Document]


def render_feed(spec: FeedSpec, articles: list[dict[str, Any]], size: int,
                removed_at: dt.datetime | None = None) -> Rendered:
    """All three formats of ``spec`` holding the newest ``size`` of ``articles``.

    ``removed_at`` is when the feed last lost an item (a retraction); the feed's
    updated date is the newest of that and its items' dates, never the clock.
    """
    return render_items(spec, window(articles, size), removed_at)


def render_items(spec: FeedSpec, items: list[Item], removed_at: dt.datetime | None = None) -> Rendered:
    """Like ``render_feed`` for items already built (the workers' cached path); newest first."""
    items = window_of_items(items, len(items))
    updated = feed_updated(items, removed_at)
    # Before 1970 an HTTP date is read back wrongly by common parsers (Python's takes year 0001 for 2001),
    # so a feed of very old stories says 1970: still older than anything a client will have seen.
    last_modified = http_date(max(updated, EPOCH))
    documents = {}
    for fmt, pieces in PARTS.items():
        parts = tuple(pieces(spec, items, updated))
        body = b"".join(parts)
        documents[fmt] = Document(fmt, body, etag_of(body), last_modified, parts)
    return Rendered(spec.feed_id, updated, tuple(i.article_id for i in items), documents)


def stamp_last_modified(rendered: Rendered, previous: dict[str, tuple[str | None, str | None]],
                        now: dt.datetime) -> Rendered:
    """Give each document the Last-Modified it must be served with, given the stored (ETag, Last-Modified).

    Normally that is the feed's updated date. But the bytes can change while that
    date does not (a backdated story enters the window, an update keeps its
    dateModified, a setting changes): a reader polling with If-Modified-Since
    alone would then get 304 and miss the change. So a changed document whose
    date would not move past the stored one is stamped ``now`` (at least one
    second past the stored date: HTTP dates have one-second resolution), and an
    unchanged document keeps its stored date.
    """
    documents = {}
    for fmt, doc in rendered.documents.items():
        old_etag, old_lm = previous.get(fmt, (None, None))
        last_modified = doc.last_modified
        if old_lm and old_etag == doc.etag:
            last_modified = old_lm
        elif old_lm:
            try:
                before = email.utils.parsedate_to_datetime(old_lm)
            except (TypeError, ValueError, IndexError):
                before = None
            if before is not None and rendered.updated.replace(microsecond=0) <= before:
                last_modified = http_date(max(now.replace(microsecond=0), before + dt.timedelta(seconds=1)))
        documents[fmt] = dataclasses.replace(doc, last_modified=last_modified)
    return dataclasses.replace(rendered, documents=documents)
