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

from .jsonfeed import render_json
from .model import FORMATS, FeedSpec, Item, feed_updated, window, window_of_items
from .xmlfeeds import render_atom, render_rss

RENDERERS = {"rss": render_rss, "atom": render_atom, "json": render_json}


@dataclasses.dataclass(frozen=True)
class Document:
    fmt: str
    body: bytes
    etag: str
    last_modified: str  # an HTTP-date

    @property
    def content_type(self) -> str:
        return FORMATS[self.fmt][1]


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
    last_modified = http_date(updated)
    documents = {}
    for fmt, render in RENDERERS.items():
        body = render(spec, items, updated)
        documents[fmt] = Document(fmt, body, etag_of(body), last_modified)
    return Rendered(spec.feed_id, updated, tuple(i.article_id for i in items), documents)
