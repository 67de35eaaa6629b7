"""500 stories published at once to one section, rendered by several worker processes:
the feeds end holding exactly the newest N, none lost, none doubled, with far fewer renders than events."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import feedparser
import pytest

from conftest import wait_for
from feeds_fixtures import dated_story, unique_section

from syndicate import events
from syndicate.config import get_settings
from syndicate.feeds import slugify, state
from syndicate.feeds.model import stable_id
from syndicate.store import get_redis

STORIES = 500
WORKERS = 3
SYNDICATE = Path(sys.executable).with_name("syndicate")


@pytest.fixture()
def feed_workers():
    procs = [
        subprocess.Popen([str(SYNDICATE), "worker", "-Q", "feeds", "-c", "2", "--loglevel", "WARNING",
                          "-n", f"feeds-load-{n}@%h"], env=dict(os.environ),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for n in range(WORKERS)
    ]
    yield procs
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_500_concurrent_stories_end_as_exactly_the_newest_n(feed_workers, redis_client):
    from syndicate.workers.app import app

    size = get_settings().feed_size
    section = unique_section("Load")
    feed_id = f"sections/{slugify(section)}"
    start = dt.datetime(2002, 1, 1, tzinfo=dt.timezone.utc)
    stories = [dated_story(section, start + dt.timedelta(minutes=n)) for n in range(STORIES)]

    def publish(article: dict) -> str:
        result = events.ingest(article)
        app.send_task("syndicate.feeds.apply_event", args=[result.event_id])
        return result.event_id

    with ThreadPoolExecutor(16) as pool:
        event_ids = list(pool.map(publish, stories))
    assert len(set(event_ids)) == STORIES

    newest = [a["id"] for a in sorted(stories, key=lambda a: a["datePublished"], reverse=True)[:size]]
    doc = state.doc_key(feed_id)
    binary = get_redis(decode=False)

    def settled() -> bool:
        body = state.read_bodies(binary, feed_id, ["json"])["json"]
        if body is None or state.current_gen(redis_client, feed_id) != int(redis_client.hget(doc, "gen") or -1):
            return False
        return [i["_syndicate"]["article_id"] for i in json.loads(body)["items"]] == newest

    wait_for(settled, timeout=120, interval=0.2, message="the section feed to settle on the newest N")
    wait_for(lambda: not redis_client.exists(state.lock_key(feed_id)), message="the render lock released")
    for proc in feed_workers:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]

    # Every format holds exactly the newest N, once each, newest first.
    expected_ids = [stable_id(a) for a in newest]
    for fmt in ("rss", "atom"):
        parsed = feedparser.parse(state.read_bodies(binary, feed_id, [fmt])[fmt])
        assert parsed.bozo == 0
        assert [e.id for e in parsed.entries] == expected_ids
    assert [i["id"] for i in json.loads(state.read_bodies(binary, feed_id, ["json"])["json"])["items"]] == expected_ids

    # Nothing lost: every story is stored and live; those outside the window are all older than it.
    stored = {a["id"] for a in stories if events.get_article(a["id"])}
    assert stored == {a["id"] for a in stories}
    renders = int(redis_client.hget(doc, "renders"))
    print(f"{renders} renders for {STORIES} events")
    assert 1 <= renders < STORIES / 5, f"{renders} renders for {STORIES} events"
