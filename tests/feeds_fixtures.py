"""Helpers shared by the feeds tests: dated unique stories, posting them, reading feeds as a reader does
(feedparser for the documents, a browser's view of the HTML in them)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import uuid
from html.parser import HTMLParser

import feedparser

from conftest import INGEST_AUTH, unique_article

_clock = itertools.count()


def dated_story(section: str, when: dt.datetime | None = None, **changes) -> dict:
    """A unique story in ``section``; by default dated after every earlier call, so it is the newest."""
    if when is None:
        when = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=next(_clock),
                                                                             microseconds=uuid.uuid4().int % 1000)
        when += dt.timedelta(days=(uuid.uuid4().int % 100000) / 1000)
    stamp = when.isoformat().replace("+00:00", "Z")
    return unique_article(section=section, datePublished=stamp, dateModified=stamp, **changes)


def unique_section(name: str = "Sec") -> str:
    return f"{name} {uuid.uuid4().hex[:8]}"


def post(http, api: str, article: dict) -> dict:
    response = http.post(f"{api}/v1/articles", data=json.dumps(article),
                         headers={**INGEST_AUTH, "Content-Type": "application/json"})
    assert response.status_code in (200, 202), response.text
    return response.json()


def entries(http, url: str) -> list | None:
    """The feed's items as a reader sees them (feedparser for XML, json for JSON Feed); None if absent."""
    response = http.get(url)
    if response.status_code != 200:
        return None
    if url.endswith(".json"):
        return response.json()["items"]
    parsed = feedparser.parse(response.content)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    return parsed.entries


def titles(http, url: str) -> list[str] | None:
    items = entries(http, url)
    return None if items is None else [i["title"] for i in items]


# --- What a reader shows ------------------------------------------------------------------------

class _HtmlView(HTMLParser):
    """Text, tags and attribute values of an HTML fragment, as a browser would build them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.tags: list[tuple[str, tuple[tuple[str, str | None], ...]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, tuple(attrs)))

    handle_startendtag = handle_starttag

    def handle_data(self, data):
        self.text.append(data)


def html_view(fragment: str) -> tuple[str, list[tuple[str, tuple[tuple[str, str | None], ...]]]]:
    """(the text a browser shows, the start tags with their attributes) of an HTML fragment."""
    view = _HtmlView()
    view.feed(fragment)
    view.close()
    return "".join(view.text), view.tags


def shown(value: str, content_type: str) -> list[str]:
    """What a reader displays for one feedparser value: the text itself when it is plain text, else the
    text and the attribute values (alt text, titles) of the HTML it holds."""
    if content_type == "text/plain":
        return [value]
    text, tags = html_view(value)
    return [text] + [v for _tag, attrs in tags for _name, v in attrs if v]


def reader_values(node, default_type: str, path: str = "") -> list[tuple[str, str, str]]:
    """Every string feedparser exposes under ``node`` as (path, value, content type).

    Typed values (``*_detail``, content) carry their type; an untyped value gets ``default_type``:
    RSS readers take RSS text as HTML, while Atom says text unless it declares otherwise.
    """
    out: list[tuple[str, str, str]] = []
    if isinstance(node, dict):
        if isinstance(node.get("value"), str) and "type" in node:
            return [(path, node["value"], node["type"])]
        for name, value in node.items():
            detail = node.get(f"{name}_detail")
            if isinstance(value, str) and isinstance(detail, dict) and "type" in detail:
                # Usually the detail's value; not always (feedparser files media:description under summary_detail).
                out.append((f"{path}.{name}", value, detail["type"]))
                continue
            out += reader_values(value, default_type, f"{path}.{name}")
    elif isinstance(node, list):
        for n, value in enumerate(node):
            out += reader_values(value, default_type, f"{path}[{n}]")
    elif isinstance(node, str):
        out.append((path, node, default_type))
    return out


def stored_body(client, prefix: str, feed_id: str, fmt: str) -> bytes | None:
    """The stored bytes of one feed document under the key ``prefix`` (None if never rendered), read as
    every reader reads them (``feeds.state.body_of``). ``client`` returns bytes."""
    from syndicate.feeds import state

    return state.body_of(*client.hmget(f"{prefix}feeds:doc:{feed_id}", state.body_fields(fmt)))


def stored_feed_files(client, prefix: str) -> dict[str, bytes]:
    """{file name: bytes} of every rendered feed under the key ``prefix``: what the API serves,
    and what a folder of static feed files must hold. ``client`` returns bytes."""
    from syndicate.feeds.model import FORMATS

    slugs = sorted(s.decode() if isinstance(s, bytes) else s for s in client.hkeys(f"{prefix}feeds:sections"))
    files = {}
    for feed_id in ["all"] + [f"sections/{slug}" for slug in slugs]:
        for fmt, (ext, _type) in FORMATS.items():
            body = stored_body(client, prefix, feed_id, fmt)
            if body:
                files[f"{feed_id}.{ext}"] = body
    return files


def folder_files(folder) -> dict[str, bytes]:
    """{relative name: bytes} of every file under ``folder`` (temporary dot-files left out)."""
    from pathlib import Path

    folder = Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".")}
