"""The event body a partner receives (pure).

``{"type", "timestamp", "data"}`` as src/syndicate/schemas/event.schema.json describes. The
data is a summary a partner can act on without a second request (headline,
URL, section, summary, Quick Looks, lead image, dates, feed URLs); partners
configured with ``fullArticle`` also get the whole article. The body is
serialised once, stored with the delivery, and the same bytes are signed and
sent on every attempt.

A retraction of a story whose body was let go (retention.py keeps a version
record: id, version, status, headline, URL, section, dates, ``"bodyKept": false``)
carries only those fields and the feed URLs, and no ``article``: the schema
requires no more of ``article.retracted``, and a partner takes a story down by
its id or URL.
"""

from __future__ import annotations

import json
from typing import Any

from ..feeds.text import slugify  # the feeds channel's slug, so our feed URLs match the served ones

TEST_EVENT = "webhook.test"
FEED_FORMATS = ("rss", "atom", "json")


def feed_urls(public_url: str, section: str) -> dict[str, dict[str, str]]:
    base = public_url.rstrip("/") + "/feeds"
    slug = slugify(section)
    return {
        "main": {fmt: f"{base}/all.{fmt}" for fmt in FEED_FORMATS},
        "section": {fmt: f"{base}/sections/{slug}.{fmt}" for fmt in FEED_FORMATS},
    }


def lead_image(article: dict[str, Any]) -> dict[str, Any] | None:
    images = article.get("images") or []
    lead = next((img for img in images if img.get("role") == "lead"), None)
    if lead is None:
        return None
    fields = ("url", "alt", "caption", "credit", "width", "height", "mimeType")
    return {k: lead[k] for k in fields if k in lead}


def is_version_record(article: dict[str, Any]) -> bool:
    """A story whose body was let go (retention.MARKER, read here without importing the store side)."""
    return article.get("bodyKept") is False


def article_data(article: dict[str, Any], public_url: str, full: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": article["id"],
        "version": article["version"],
        "status": article.get("status", "published"),
        "headline": article["headline"],
        "url": article["url"],
        "section": article["section"],
    }
    # A whole story always has both; a version record (a retraction past the retention) has neither.
    data.update({name: article[name] for name in ("summary", "quickLooks") if name in article})
    data.update({
        "datePublished": article["datePublished"],
        "dateModified": article["dateModified"],
        "feeds": feed_urls(public_url, article["section"]),
    })
    image = lead_image(article)
    if image:
        data["leadImage"] = image
    if full and not is_version_record(article):
        data["article"] = article
    return data


def event_body(event: dict[str, Any], public_url: str, full_article: bool = False) -> dict[str, Any]:
    """The envelope for one logged event (``events.get_event`` shape)."""
    return {
        "type": event["type"],
        "timestamp": event["timestamp"],
        "data": article_data(event["article"], public_url, full_article),
    }


def test_body(partner: str, timestamp: str) -> dict[str, Any]:
    """The body of ``partners ping``: a signed event carrying no article."""
    return {
        "type": TEST_EVENT,
        "timestamp": timestamp,
        "data": {"partner": partner, "message": "Test event from syndicate: if the signature verifies, you are set up."},
    }


def encode(body: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON: these exact bytes are signed and sent."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
