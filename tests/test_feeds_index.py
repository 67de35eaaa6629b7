"""The Redis side of the feeds channel against real Redis: windows, refills, section moves,
single-flight rendering, the stale sweep, and the CLI."""

from __future__ import annotations

import datetime as dt
import json

from click.testing import CliRunner

from feeds_fixtures import dated_story, unique_section

from syndicate import events
from syndicate.cli.main import cli
from syndicate.config import get_settings
from syndicate.feeds import index, service, slugify, state
from syndicate.store import get_redis

OLD = dt.datetime(2001, 1, 1, tzinfo=dt.timezone.utc)


def publish_direct(article: dict) -> str:
    """Ingest into the store and apply it to the feeds, as the feeds task does, without a broker."""
    result = events.ingest(article)
    service.apply_article(article["id"])
    return result.event_id


def doc_items(feed_id: str, fmt: str = "json") -> list[dict]:
    body = state.read_bodies(get_redis(decode=False), feed_id, [fmt])[fmt]
    return json.loads(body)["items"] if body else []


def test_window_is_capped_and_refills_after_retractions(redis_client):
    size = get_settings().feed_size
    section = unique_section("Refill")
    feed_id = f"sections/{slugify(section)}"
    stories = [dated_story(section, OLD + dt.timedelta(hours=n)) for n in range(size + 2)]
    for article in stories:
        events.ingest(article)
    service.rebuild([feed_id])
    newest_first = [a["id"] for a in reversed(stories)]
    assert [i["_syndicate"]["article_id"] for i in doc_items(feed_id)] == newest_first[:size]
    assert redis_client.zcard(index.index_key(feed_id)) == size  # capped: the index holds the window only

    for article in stories[-2:]:
        events.retract(article["id"])
        service.apply_article(article["id"])
    held = [i["_syndicate"]["article_id"] for i in doc_items(feed_id)]
    assert held == newest_first[2:size + 2]  # the two oldest came back in
    assert len(set(held)) == len(held)
    atom = state.read_bodies(get_redis(decode=False), feed_id, ["atom"])["atom"].decode()
    retracted_at = float(redis_client.hget("%sfeeds:removed" % get_settings().redis_prefix, feed_id))
    assert retracted_at > OLD.timestamp() + 100 * 3600 and "<updated>20" in atom


def test_moving_a_story_to_another_section_moves_it_between_feeds(redis_client):
    first, second = unique_section("From"), unique_section("To")
    article = dated_story(first)
    publish_direct(article)
    assert [i["title"] for i in doc_items(f"sections/{slugify(first)}")] == [article["headline"]]
    moved = {**article, "version": 2, "section": second, "labels": [second]}
    publish_direct(moved)
    assert doc_items(f"sections/{slugify(first)}") == []
    assert [i["_syndicate"]["article_id"] for i in doc_items(f"sections/{slugify(second)}")] == [article["id"]]


def test_applying_the_same_event_twice_changes_nothing(redis_client):
    section = unique_section("Twice")
    feed_id = f"sections/{slugify(section)}"
    article = dated_story(section)
    publish_direct(article)
    before = state.etags(redis_client, feed_id, ("rss", "atom", "json"))
    service.apply_article(article["id"])
    assert state.etags(redis_client, feed_id, ("rss", "atom", "json")) == before
    assert len(doc_items(feed_id)) == 1


def test_a_late_event_for_a_retracted_story_does_not_bring_it_back(redis_client):
    section = unique_section("Late")
    feed_id = f"sections/{slugify(section)}"
    article = dated_story(section)
    events.ingest(article)
    events.retract(article["id"])
    service.apply_article(article["id"])  # the published event, delivered after the retraction
    assert doc_items(feed_id) == []
    assert article["id"] not in redis_client.zrange(index.index_key(feed_id), 0, -1)


def test_single_flight_changes_during_a_render_cause_one_more(redis_client):
    section = unique_section("Flight")
    feed_id = f"sections/{slugify(section)}"
    first = dated_story(section)
    publish_direct(first)
    renders = int(redis_client.hget(state.doc_key(feed_id), "renders"))

    # Another worker holds the render: changes only mark the feed and return.
    token = state.try_lock(redis_client, feed_id)
    gen_seen = state.current_gen(redis_client, feed_id)
    later = [dated_story(section) for _ in range(3)]
    for article in later:
        publish_direct(article)
    assert int(redis_client.hget(state.doc_key(feed_id), "renders")) == renders
    # The holder cannot let go: the feed changed while it rendered, so it must render again.
    assert state.release(redis_client, feed_id, token, gen_seen) == 0
    assert state.release(redis_client, feed_id, token, state.current_gen(redis_client, feed_id)) == 1
    # With the holder gone (here: released without rendering), the sweep finds the feed stale and renders it once.
    assert feed_id in service.stale_feeds(redis_client)
    assert feed_id in service.sweep()
    assert int(redis_client.hget(state.doc_key(feed_id), "renders")) == renders + 1
    assert {i["_syndicate"]["article_id"] for i in doc_items(feed_id)} == {a["id"] for a in [first, *later]}
    assert feed_id not in service.stale_feeds(redis_client)


def test_a_lost_lock_stops_the_old_holder_from_storing(redis_client):
    section = unique_section("Lost")
    feed_id = f"sections/{slugify(section)}"
    publish_direct(dated_story(section))
    token = state.try_lock(redis_client, feed_id)
    redis_client.delete(state.lock_key(feed_id))  # its TTL ran out
    assert state.try_lock(redis_client, feed_id)  # someone else took over
    rendered = service.render_now(feed_id)
    assert state.store(redis_client, feed_id, token, 99, rendered) is False
    assert state.release(redis_client, feed_id, token, 99) == -1


def test_cli_feeds_list_and_rebuild(redis_client):
    section = unique_section("Cli")
    article = dated_story(section)
    publish_direct(article)
    feed_id = f"sections/{slugify(section)}"
    runner = CliRunner()

    listed = runner.invoke(cli, ["feeds", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    row = next(r for r in json.loads(listed.output) if r["id"] == feed_id)
    assert row["items"] == 1 and row["urls"]["atom"].endswith(f"/feeds/{feed_id}.atom") and not row["stale"]

    table = runner.invoke(cli, ["feeds", "list"])
    assert table.exit_code == 0 and feed_id in table.output

    # Lose the feed's state entirely; rebuild restores it from the article store.
    redis_client.delete(index.index_key(feed_id), state.doc_key(feed_id))
    rebuilt = runner.invoke(cli, ["feeds", "rebuild", "--feed", feed_id])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "rebuilt 1 feed(s)" in rebuilt.output
    assert [i["_syndicate"]["article_id"] for i in doc_items(feed_id)] == [article["id"]]

    bad = runner.invoke(cli, ["feeds", "rebuild", "--feed", "sections/nope-nope"])
    assert bad.exit_code == 2 and "unknown feed" in bad.output


def test_an_unreadable_story_does_not_stop_a_rebuild_or_a_refill(redis_client):
    """A stored record that is not JSON is isolated where it is rendered; finding sections for a
    rebuild and the candidates of a refill step over it and still see every other story."""
    from syndicate.store import key

    section = unique_section("Unreadable")
    good = dated_story(section, dt.datetime(2001, 2, 3, 4, 5, 6, tzinfo=dt.timezone.utc))
    publish_direct(good)
    bad = dated_story(section, dt.datetime(2001, 2, 3, 4, 5, 7, tzinfo=dt.timezone.utc))
    publish_direct(bad)
    redis_client.hset(key("article", bad["id"]), "json", '{"section": "unterminated')
    redis_client.hdel(key("feeds", "sections"), slugify(section))

    assert index.discover_sections(get_redis()) >= 1
    assert redis_client.hget(key("feeds", "sections"), slugify(section)) == section
    found = [i for i, _v, _s in index.candidates(get_redis(), f"sections/{slugify(section)}", "+inf", 5)]
    assert found == [good["id"]]
