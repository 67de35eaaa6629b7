"""JSON Feed 1.1 (https://jsonfeed.org/version/1.1), written directly: feedgen has no JSON Feed (pure).

Keys are written in a fixed order and dates in UTC, so the same state always
serialises to the same bytes. Syndicate-specific data lives in ``_syndicate``,
the spec's extension mechanism (keys starting with an underscore).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from typing import Any

from .model import FeedSpec, Item, feed_language

VERSION = "https://jsonfeed.org/version/1.1"


def _date(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _item(item: Item) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": item.id,
        "url": item.link,
        "title": item.title,
        "content_html": item.content_html,
        "summary": item.summary,
    }
    if item.lead:
        out["image"] = item.lead["url"]
    out["date_published"] = _date(item.published)
    out["date_modified"] = _date(item.updated)
    out["authors"] = [dict(a) for a in item.authors]
    out["tags"] = list(item.categories)
    out["language"] = item.language
    out["_syndicate"] = {
        "article_id": item.article_id,
        "dateline": item.dateline,
        "outlet": item.outlet,
        "dateline_city": item.dateline_city,
        "edition": item.edition,
        "quick_looks": item.quick_looks,
        "photos": [
            {k: img[k] for k in ("url", "role", "caption", "credit", "alt", "width", "height") if k in img}
            for img in item.images
        ],
    }
    return out


def _dumps(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@functools.lru_cache(maxsize=1024)
def item_bytes(item: Item) -> bytes:
    return _dumps(_item(item))


_COMMA = b","  # one object for every separator, so the compressed pieces are memoised once


def render_json(spec: FeedSpec, items: list[Item], updated: dt.datetime) -> bytes:
    return b"".join(json_parts(spec, items, updated))


def json_parts(spec: FeedSpec, items: list[Item], updated: dt.datetime) -> list[bytes]:
    """The document as its pieces: the head, each cached item encoding (with its separating comma
    as a piece of its own), the tail; joined, they are the document."""
    doc: dict[str, Any] = {
        "version": VERSION,
        "title": spec.title,
        "home_page_url": spec.site_url,
        "feed_url": spec.url("json"),
        "description": spec.description,
        "language": feed_language(items),
    }
    if spec.icon:
        doc["icon"] = spec.icon
        doc["favicon"] = spec.icon
    if spec.websub_hub:
        doc["hubs"] = [{"type": "WebSub", "url": spec.websub_hub}]
    doc["_syndicate"] = {"updated": _date(updated), "generator": "syndicate " + spec.generator_version}
    # "items" is the last key: the cached item encodings are joined into its array, which is
    # byte-for-byte what json.dumps of the whole document would write.
    doc["items"] = []
    shell = _dumps(doc)
    assert shell.endswith(b"[]}")
    parts = [shell[:-2]]
    for n, item in enumerate(items):
        parts += [_COMMA, item_bytes(item)] if n else [item_bytes(item)]
    parts.append(b"]}")
    return parts
