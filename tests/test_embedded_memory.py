"""The embedded Redis (`syndicate run`'s default) keeps an archived story's version record compact.

Past its body a story keeps a version record (syndicate.retention) for as long as the
archive lasts, so its size is what an archive of a million stories costs. Its URL and
headline are longer than Redis's default 64-byte limit for the compact hash encoding;
the embedded server raises that limit, and the record stays a ziplist.
"""

from __future__ import annotations

import pytest
import redis

from conftest import unique_article
from syndicate import events, retention
from syndicate.config import reset_settings
from syndicate.embedded import EmbeddedRedis
from syndicate.store import key


@pytest.fixture()
def embedded(tmp_path, monkeypatch):
    with EmbeddedRedis(tmp_path / "redis") as server:
        monkeypatch.setenv("SYNDICATE_REDIS_URL", server.url)
        monkeypatch.setenv("SYNDICATE_FEED_SIZE", "1")  # feeds of one story and no margin: an older
        monkeypatch.setenv("SYNDICATE_BODY_MARGIN", "0")  # story is past every window
        reset_settings()
        try:
            yield redis.Redis.from_url(server.url, decode_responses=True)
        finally:
            monkeypatch.undo()
            reset_settings()


def test_an_archived_story_keeps_a_compact_version_record(embedded):
    events.ingest(unique_article(), embedded)  # the one story the window holds
    article = unique_article(datePublished="1990-01-01T00:00:00Z", dateModified="1990-01-01T00:00:00Z",
                             headline="A headline long enough to pass the 64-byte default of the compact encoding",
                             url="https://news.example.com/world/2026/11/30/a-story-with-a-long-url-like-real-ones")
    events.ingest(article, embedded)
    whole = embedded.memory_usage(key("article", article["id"]))

    counts = retention.trim_bodies(older_than=-1, only=[article["id"]], client=embedded)

    assert counts["trimmed"] == 1
    record = embedded.hgetall(key("article", article["id"]))
    assert record["json"] == retention.encode_record(article)  # the record itself: headline and URL kept
    assert embedded.object("encoding", key("article", article["id"])) in ("ziplist", "listpack")
    archived = embedded.memory_usage(key("article", article["id"]))
    assert archived < 1000 < whole, (archived, whole)
