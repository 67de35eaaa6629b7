"""Helpers shared by the feeds tests: dated unique stories, posting them, reading feeds as a reader does."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import uuid

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
