"""What a feed is and what an item carries, independent of format (pure).

``FeedSpec`` names a feed (the main feed or one section) and everything the
documents say about it; ``Item`` is one article reduced to the fields every
format needs, with text cleaned and dates in UTC. Both are built from plain
dicts and settings values, so the renderers never see Redis or Celery.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import uuid
from typing import Any

from .. import dates
from .content import article_html, lead_image, safe_url
from .text import clean, slugify

FORMATS: dict[str, tuple[str, str]] = {
    # format -> (file extension, Content-Type)
    "rss": ("rss", "application/rss+xml; charset=utf-8"),
    "atom": ("atom", "application/atom+xml; charset=utf-8"),
    "json": ("json", "application/feed+json; charset=utf-8"),
}
MAIN_FEED = "all"
GENERATOR = "syndicate"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def section_feed_id(section: str) -> str:
    return f"sections/{slugify(section)}"


@dataclasses.dataclass(frozen=True)
class FeedSpec:
    """One feed: ``all`` or ``sections/<slug>``, and its feed-level metadata."""

    feed_id: str
    title: str
    description: str
    site_url: str
    public_url: str
    icon: str | None = None
    websub_hub: str | None = None
    generator_version: str = ""
    max_age: int = 60

    def url(self, fmt: str) -> str:
        """Where this feed is served in ``fmt``: ``{public_url}/feeds/{feed_id}.{ext}``."""
        return f"{self.public_url}/feeds/{self.feed_id}.{FORMATS[fmt][0]}"

    def path(self, fmt: str) -> str:
        """The file name under SYNDICATE_FEED_DIR (and the URL path under /feeds/)."""
        return f"{self.feed_id}.{FORMATS[fmt][0]}"


def feed_spec(feed_id: str, settings: Any, section_name: str | None = None, version: str = "") -> FeedSpec:
    """The spec of ``feed_id`` under ``settings`` (a config.Settings or anything with its fields)."""
    title, description = settings.feed_title, settings.feed_description
    if feed_id != MAIN_FEED:
        name = section_name or feed_id.split("/", 1)[-1]
        title, description = f"{title}: {name}", f"{description} in {name}"
    return FeedSpec(
        feed_id=feed_id, title=clean(title), description=clean(description),
        # Settings are text too: an icon or hub that is not http(s) is left out rather than linked.
        site_url=settings.site_url, public_url=settings.public_url, icon=safe_url(settings.feed_icon),
        websub_hub=safe_url(settings.websub_hub), generator_version=version, max_age=settings.feed_max_age,
    )


def utc(value: str) -> dt.datetime:
    return dates.parse(value)


def stable_id(article_id: str) -> str:
    """The item id: derived from the article id alone, so updates, URL changes and config never move it."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'syndicate:article:' + article_id)}"


# eq=False: hashed by identity, so the renderers can memoise per-item fragments on
# the very instances item_from_json hands out (one per stored article version).
@dataclasses.dataclass(frozen=True, eq=False)
class Item:
    article_id: str
    id: str
    title: str
    link: str
    summary: str
    content_html: str
    authors: tuple[dict[str, str], ...]
    categories: tuple[str, ...]
    published: dt.datetime
    updated: dt.datetime
    language: str
    images: tuple[dict[str, Any], ...]
    lead: dict[str, Any] | None
    quick_looks: dict[str, Any]
    dateline: str
    outlet: str
    dateline_city: str = ""
    edition: str = ""


def _image(img: dict[str, Any]) -> dict[str, Any]:
    out = {"url": safe_url(img["url"]), "role": img.get("role", "inline")}
    for name in ("alt", "caption", "credit", "mimeType"):
        if img.get(name):
            out[name] = clean(img[name])
    for name in ("width", "height"):
        if img.get(name):
            out[name] = int(img[name])
    return out


def item_from_article(article: dict[str, Any]) -> Item:
    byline = article.get("byline") or {}
    images = tuple(_image(img) for img in article.get("images") or [] if safe_url(img.get("url")))
    lead = lead_image(article)
    categories: list[str] = []
    for value in [article.get("section"), *(article.get("labels") or []), *(article.get("tags") or [])]:
        text = clean(value)
        if text and text not in categories:
            categories.append(text)
    published = utc(article["datePublished"])
    updated = max(utc(article.get("dateModified") or article["datePublished"]), published)
    looks = article.get("quickLooks") or {}
    return Item(
        article_id=article["id"],
        id=stable_id(article["id"]),
        title=clean(article["headline"]),
        link=safe_url(article["url"]) or "",
        summary=clean(article.get("summary")),
        content_html=article_html(article, clean(article.get("language")) or "en"),
        authors=tuple({"name": clean(a["name"]), **({"url": safe_url(a["url"])} if safe_url(a.get("url")) else {})}
                      for a in byline.get("authors") or [] if clean(a.get("name"))),
        categories=tuple(categories),
        published=published,
        updated=updated,
        language=clean(article.get("language")) or "en",
        images=images,
        lead=_image(lead) if lead else None,
        quick_looks={"title": clean(looks.get("title")), "items": [clean(x) for x in looks.get("items") or []]},
        dateline=clean((article.get("body") or {}).get("dateline")),
        outlet=clean(byline.get("outlet")),
        dateline_city=clean(byline.get("datelineCity")),
        edition=clean(byline.get("edition")),
    )


@functools.lru_cache(maxsize=1024)  # ~20 feeds of 50; a miss only costs a rebuild of the item
def item_from_json(raw: str) -> Item | None:
    """``item_from_article`` of a stored article's JSON, memoised on the exact text.

    A feed re-renders the same 50 stories over and over while only one of them
    changed; building each item's HTML once per version keeps a render cheap.
    Item is frozen, so sharing cached instances is safe. None for a retraction.
    """
    article = json.loads(raw)
    return None if article.get("status") == "retracted" else item_from_article(article)


def window(articles: list[dict[str, Any]], size: int) -> list[Item]:
    """The newest ``size`` items by datePublished, ties broken by article id so order is stable."""
    return window_of_items([item_from_article(a) for a in articles if a.get("status") != "retracted"], size)


def window_of_items(items: list[Item], size: int) -> list[Item]:
    items = list(items)
    items.sort(key=lambda i: (i.published, i.article_id), reverse=True)
    return items[:size]


def feed_updated(items: list[Item], floor: dt.datetime | None = None) -> dt.datetime:
    """The feed's updated date: its newest change, never "now" (so the same state renders the same bytes).

    ``floor`` is the time of the latest removal from the feed (a retraction),
    which changes the feed without leaving an item behind to date it.
    """
    candidates = [i.updated for i in items] + ([floor] if floor else [])
    return max(candidates) if candidates else EPOCH


def feed_language(items: list[Item]) -> str:
    """The feed's language: the most common among its items (ties: the newer item's), "en" when empty.

    Not simply the newest item's: one Arabic story atop an English main feed must
    not relabel the whole feed. Each item also carries its own language (Atom
    ``xml:lang``, RSS ``dc:language``, JSON Feed ``language``).
    """
    if not items:
        return "en"
    counts: dict[str, int] = {}
    for item in items:
        counts[item.language] = counts.get(item.language, 0) + 1
    return max(counts, key=lambda lang: counts[lang])  # dicts keep order: the first max is the newest
