"""RSS 2.0 and Atom 1.0 through feedgen 1.0.0, with each of its known defects worked around (pure).

feedgen defects (see DESIGN.md) and what this module does about each:

* Atom entry links lose rel/type (lkiesow/python-feedgen#135): ``FeedEntry.atom_entry``
  rebinds its loop variable to the new element and reads rel/type from that.
  Our Atom entry extension drops those bare links and writes complete ones.
* ``ext.media`` wraps every ``media:content`` in a ``media:group`` (invalid for a
  single image) and has no ``media:description``/``media:credit``: we register our
  own RSS entry extension that writes Media RSS directly under the item.
* ``ext.syndication`` writes wrong element names: not loaded; ``<ttl>`` carries
  the polling hint instead.
* The RSS channel ``<link>`` is the *last* ``link()`` call: rel=self goes first,
  the alternate (site) link last.
* An author with an email writes ``<author>`` beside ``dc:creator``: authors are
  given without email, and ``dc:creator`` is written by our extension (RSS only).
* ``updated``/``lastBuildDate`` default to now(): always set from the feed state.
* RSS dates come out with the year unpadded ("02 Jan 1") for years before 1000,
  which is no RFC 822 date: ``pubDate`` and ``lastBuildDate`` are rewritten with
  a four-digit year.
* Items have no language in feedgen: Atom entries get ``xml:lang`` and RSS items
  ``dc:language`` from our extensions.
* ``content:encoded`` only appears when a description is also set: the summary
  is always set as the description (falling back to the headline).

Escaping for the context text lands in (feedgen only XML-escapes):

* RSS 2.0 never says which elements are plain text, and readers treat
  ``description`` (and many also ``title``, ``category``, ``dc:creator`` and Media
  RSS text) as HTML. Plain text is therefore HTML-escaped before lxml XML-escapes
  it, in every RSS element that carries article or settings text, so
  ``<img onerror=..>`` typed by a newsroom is shown as those characters.
  ``media:description`` and ``media:text`` say ``type="html"`` accordingly.
* Atom declares its types: titles, subtitles and summaries are written with an
  explicit ``type="text"``, person names and category terms are text by RFC 4287,
  so there the text goes in as it is (XML-escaped only).
* The content (``content:encoded``, Atom ``type="html"``) is built by
  ``content.article_html``, which escapes every field itself.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import functools

from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.feed import FeedGenerator
from feedgen.util import xml_elem

from .model import GENERATOR, FeedSpec, Item, feed_language
from .text import html_text

ATOM_NS = "http://www.w3.org/2005/Atom"
MEDIA_NS = "http://search.yahoo.com/mrss/"
DC_NS = "http://purl.org/dc/elements/1.1/"


def _rfc822(when: dt.datetime) -> str:
    return email.utils.format_datetime(when.astimezone(dt.timezone.utc))  # "+0000", four-digit year


class _RssFeedExtension(BaseExtension):
    """Channel-level additions feedgen cannot write: the WebSub hub link; a well-formed lastBuildDate."""

    hub: str | None = None
    updated: dt.datetime | None = None

    def extend_ns(self):
        return {"media": MEDIA_NS, "dc": DC_NS}

    def extend_rss(self, rss):
        channel = rss.find("channel")
        built = channel.find("lastBuildDate") if channel is not None else None
        if built is not None and self.updated is not None:
            built.text = _rfc822(self.updated)
        if self.hub is not None and channel is not None:
            self_link = channel.find(f"{{{ATOM_NS}}}link")
            hub = xml_elem(f"{{{ATOM_NS}}}link", channel, href=self.hub, rel="hub")
            # Keep the atom:link elements together, right after rel=self.
            if self_link is not None:
                self_link.addnext(hub)
        return rss


class _RssEntryExtension(BaseEntryExtension):
    """Per item: ``dc:creator`` per author and Media RSS for each photo, no ``media:group``."""

    def __init__(self):
        self.language: str | None = None
        self.creators: list[str] = []
        self.images: list[dict] = []
        self.thumbnail: dict | None = None
        self.published: dt.datetime | None = None

    def extend_rss(self, item):
        published = item.find("pubDate")
        if published is not None and self.published is not None:
            published.text = _rfc822(self.published)
        if self.language:
            # RSS has no item language of its own; Dublin Core's is the usual one (feedparser reads it).
            xml_elem(f"{{{DC_NS}}}language", item).text = self.language
        for name in self.creators:
            xml_elem(f"{{{DC_NS}}}creator", item).text = html_text(name)
        for image in self.images:
            content = xml_elem(f"{{{MEDIA_NS}}}content", item, url=image["url"], medium="image")
            if image.get("mimeType"):
                content.set("type", image["mimeType"])
            for attr in ("width", "height"):
                if image.get(attr):
                    content.set(attr, str(image[attr]))
            if image.get("role") == "lead":
                content.set("isDefault", "true")
            if image.get("caption"):
                xml_elem(f"{{{MEDIA_NS}}}description", content, type="html").text = html_text(image["caption"])
            if image.get("credit"):
                xml_elem(f"{{{MEDIA_NS}}}credit", content, role="photographer").text = html_text(image["credit"])
            if image.get("alt"):
                xml_elem(f"{{{MEDIA_NS}}}text", content, type="html").text = html_text(image["alt"])
        if self.thumbnail:
            thumb = xml_elem(f"{{{MEDIA_NS}}}thumbnail", item, url=self.thumbnail["url"])
            for attr in ("width", "height"):
                if self.thumbnail.get(attr):
                    thumb.set(attr, str(self.thumbnail[attr]))
        return item


def _declare_text(parent, *names: str) -> None:
    """Say ``type="text"`` on Atom text constructs feedgen writes untyped (text is the default, but explicit
    is what validators and careful readers look for)."""
    for name in names:
        element = parent.find(f"{{{ATOM_NS}}}{name}")
        if element is None:
            element = parent.find(name)
        if element is not None and element.get("type") is None:
            element.set("type", "text")


class _AtomFeedExtension(BaseExtension):
    def extend_atom(self, feed):
        _declare_text(feed, "title", "subtitle")
        return feed


class _AtomEntryExtension(BaseEntryExtension):
    """Replaces feedgen's rel-less entry links (#135) with complete ones; types titles and summaries."""

    def __init__(self):
        self.links: list[dict[str, str]] = []
        self.language: str | None = None

    def extend_atom(self, entry):
        if self.language:
            # Each entry says its own language: a main feed mixes Arabic, Japanese, Russian and English.
            entry.set("{http://www.w3.org/XML/1998/namespace}lang", self.language)
        _declare_text(entry, "title", "summary")
        for broken in entry.findall("link"):
            entry.remove(broken)
        anchor = entry.find("content")
        for link in self.links:
            element = xml_elem("link", entry, **link)
            if anchor is not None:
                anchor.addnext(element)
                anchor = element
        return entry


def _text_for(fmt: str):
    """How plain text is written in ``fmt``: HTML-escaped for RSS (readers take it as HTML), as is for Atom."""
    return html_text if fmt == "rss" else (lambda value: value)


def _generator(spec: FeedSpec, fmt: str) -> FeedGenerator:
    text = _text_for(fmt)
    fg = FeedGenerator()
    fg.register_extension("syndicate_rss", _RssFeedExtension, _RssEntryExtension, atom=False, rss=True)
    fg.register_extension("syndicate_atom", _AtomFeedExtension, _AtomEntryExtension, atom=True, rss=False)
    fg.id(spec.url("atom"))
    fg.title(text(spec.title))
    fg.subtitle(text(spec.description))
    fg.description(text(spec.description))
    fg.generator(GENERATOR, version=spec.generator_version or None)
    fg.ttl(max(1, spec.max_age // 60))
    if spec.icon:
        fg.icon(spec.icon)
        fg.image(url=spec.icon, title=text(spec.title), link=spec.site_url)
    if spec.websub_hub:
        fg.syndicate_rss.hub = spec.websub_hub
    return fg


def _links(fg: FeedGenerator, spec: FeedSpec, fmt: str) -> None:
    # Order matters: feedgen's RSS channel <link> is the last link() call.
    fg.link(href=spec.url(fmt), rel="self", type="application/rss+xml" if fmt == "rss" else "application/atom+xml")
    if spec.websub_hub and fmt == "atom":
        fg.link(href=spec.websub_hub, rel="hub")
    fg.link(href=spec.site_url, rel="alternate", type="text/html")


def _add_items(fg: FeedGenerator, items: list[Item], fmt: str) -> None:
    text = _text_for(fmt)
    # feedgen prepends entries by default; append keeps our newest-first order.
    for item in items:
        fe = fg.add_entry(order="append")
        fe.id(item.id)
        fe.title(text(item.title))
        if item.link:  # no link rather than an unsafe one; Atom still has its content
            fe.link(href=item.link, rel="alternate", type="text/html")
        # Summary first (it becomes the RSS description), then content; without
        # a description feedgen silently drops content:encoded.
        fe.summary(text(item.summary or item.title))
        fe.description(text(item.summary or item.title), isSummary=True)
        fe.content(item.content_html, type="html")
        for author in item.authors:
            fe.author({"name": text(author["name"]), **({"uri": author["url"]} if author.get("url") else {})})
        for term in item.categories:
            fe.category(term=text(term), label=text(term))
        fe.published(item.published)
        fe.updated(item.updated)
        fe.syndicate_rss.published = item.published
        fe.syndicate_rss.creators = [a["name"] for a in item.authors]
        fe.syndicate_rss.images = list(item.images)
        fe.syndicate_rss.thumbnail = item.lead
        fe.syndicate_rss.language = item.language
        fe.syndicate_atom.language = item.language
        fe.syndicate_atom.links = [{"href": item.link, "rel": "alternate", "type": "text/html"}] if item.link else []


def _build(spec: FeedSpec, items: list[Item], updated: dt.datetime, fmt: str,
           language: str | None = None) -> FeedGenerator:
    fg = _generator(spec, fmt)
    _links(fg, spec, fmt)
    fg.language(language or feed_language(items))
    fg.updated(updated)
    fg.lastBuildDate(updated)
    fg.syndicate_rss.updated = updated
    _add_items(fg, items, fmt)
    return fg


def render_rss_whole(spec: FeedSpec, items: list[Item], updated: dt.datetime, language: str | None = None) -> bytes:
    """The whole document from one feedgen run (the reference the fast path must equal)."""
    return _build(spec, items, updated, "rss", language).rss_str(pretty=False)


def render_atom_whole(spec: FeedSpec, items: list[Item], updated: dt.datetime, language: str | None = None) -> bytes:
    return _build(spec, items, updated, "atom", language).atom_str(pretty=False)


_WHOLE = {"rss": render_rss_whole, "atom": render_atom_whole}
_TAGS = {"rss": (b"<item>", b"</item>", b"</channel>"), "atom": (b"<entry", b"</entry>", b"</feed>")}  # <entry xml:lang=..>


@functools.lru_cache(maxsize=2048)  # two formats per cached item
def entry_bytes(fmt: str, item: Item) -> bytes:
    # feedgen serialises each entry the same wherever it stands (namespaces are declared
    # on the root), so an entry cut from a one-entry document is the entry of any document.
    start, end, _ = _TAGS[fmt]
    doc = _WHOLE[fmt](_ONE_ENTRY_SPEC, [item], item.updated)
    return doc[doc.index(start):doc.rindex(end) + len(end)]


_ONE_ENTRY_SPEC = FeedSpec(feed_id="all", title="x", description="x", site_url="http://x", public_url="http://x")


def _spliced(fmt: str, spec: FeedSpec, items: list[Item], updated: dt.datetime) -> list[bytes]:
    """The feed's shell from feedgen with the cached entries spliced in: byte-identical to a whole
    render (a test holds it to that), at a fraction of the cost when one story of 50 changed.

    Returned as its pieces (shell head, one cached entry per item, shell tail), so the store can
    compress each cached entry once (``state.compress_parts``) instead of the whole document."""
    shell = _WHOLE[fmt](spec, [], updated, feed_language(items))
    close = _TAGS[fmt][2]
    cut = shell.rindex(close)
    return [shell[:cut], *(entry_bytes(fmt, item) for item in items), shell[cut:]]


def rss_parts(spec: FeedSpec, items: list[Item], updated: dt.datetime) -> list[bytes]:
    return _spliced("rss", spec, items, updated)


def atom_parts(spec: FeedSpec, items: list[Item], updated: dt.datetime) -> list[bytes]:
    return _spliced("atom", spec, items, updated)


def render_rss(spec: FeedSpec, items: list[Item], updated: dt.datetime) -> bytes:
    return b"".join(rss_parts(spec, items, updated))


def render_atom(spec: FeedSpec, items: list[Item], updated: dt.datetime) -> bytes:
    return b"".join(atom_parts(spec, items, updated))
