"""Feed renders under a burst (issue 12): fewer renders, nothing lost.

* A render that finds the stored render already current does nothing.
* At most one render task per feed waits in the queue; a change that arrives
  while a render runs is rendered afterwards, by that render again or by the
  task it queued, never lost.
* The static files are written for the last render of a burst (a render the
  feed changed under leaves them to the one that follows), and end equal to
  the stored documents.
* Through the workers, a burst of stories costs fewer renders than stories and
  ends with every story in its feeds and in the files.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json

from conftest import wait_for
from feeds_fixtures import dated_story as _dated_story
from feeds_fixtures import post, unique_section

from syndicate import events
from syndicate.config import get_settings
from syndicate.feeds import FORMATS, feed_spec, index, service, slugify, state
from syndicate.store import get_redis


_minutes = itertools.count()


def dated_story(section: str) -> dict:
    """A unique story dated long ago: it joins its section feed without pushing other tests' stories out of the
    main feed's window."""
    return _dated_story(section, dt.datetime(2001, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=next(_minutes)))


def _section_feed(article: dict) -> str:
    return f"sections/{slugify(article['section'])}"


def _stored_ids(feed_id: str) -> list[str]:
    stored = json.loads(state.read_bodies(get_redis(decode=False), feed_id, ["json"])["json"])
    return [item["_syndicate"]["article_id"] for item in stored["items"]]


def _files(feed_id: str) -> dict[str, bytes | None]:
    settings = get_settings()
    spec = feed_spec(feed_id, settings)
    out = {}
    for fmt in FORMATS:
        path = settings.feed_dir / spec.path(fmt)
        out[fmt] = path.read_bytes() if path.exists() else None
    return out


def _ingest_indexed(article: dict) -> str:
    """Store a story and place it in its section feed's index with the change marked (what apply_event does)."""
    events.ingest(article)
    feed_id = _section_feed(article)
    index.sync_article(get_redis(), article["id"], get_settings().feed_size)
    state.mark_changed(get_redis(), feed_id)
    return feed_id


def test_a_render_of_a_current_feed_does_nothing(redis_client):
    feed_id = _ingest_indexed(dated_story(unique_section("Current")))
    assert service.render_single_flight(feed_id) == 1
    renders = state.status(get_redis(), feed_id)["renders"]
    assert service.render_single_flight(feed_id) == 0
    assert state.status(get_redis(), feed_id)["renders"] == renders
    assert not get_redis().exists(state.lock_key(feed_id))  # and it let go of the lock
    assert state.up_to_date(get_redis(), feed_id)
    state.mark_changed(get_redis(), feed_id)
    assert not state.up_to_date(get_redis(), feed_id)
    assert service.render_single_flight(feed_id) == 1


def test_one_render_request_waits_at_a_time(redis_client):
    client, feed_id = get_redis(), f"sections/{slugify(unique_section('Queue'))}"
    assert state.request_render(client, feed_id)
    assert not state.request_render(client, feed_id)
    state.take_request(client, feed_id)  # the task starts: the next change queues another
    assert state.request_render(client, feed_id)
    assert 0 < client.pttl(state.queued_key(feed_id)) <= state.QUEUED_TTL_MS


def _change_during_render(monkeypatch, feed_id: str, late: dict, queue_task: bool) -> list[str]:
    """Render ``feed_id`` while ``late`` arrives in the middle of it (after the render read the window)."""
    real = service.render_now
    fired: list[str] = []

    def render_now(render_feed_id, settings=None):
        rendered = real(render_feed_id, settings)
        if not fired:
            fired.append(render_feed_id)
            _ingest_indexed(late)
            if queue_task:
                assert state.request_render(get_redis(), feed_id)
        return rendered

    monkeypatch.setattr(service, "render_now", render_now)
    return fired


def test_a_change_during_a_render_with_no_task_queued_is_rendered_at_once(redis_client, monkeypatch):
    section = unique_section("During")
    feed_id = _ingest_indexed(dated_story(section))
    late = dated_story(section)
    _change_during_render(monkeypatch, feed_id, late, queue_task=False)
    assert service.render_single_flight(feed_id) == 2
    assert late["id"] in _stored_ids(feed_id)
    assert state.up_to_date(get_redis(), feed_id)


def test_a_change_during_a_render_is_left_to_the_queued_task_which_renders_it(redis_client, monkeypatch):
    section = unique_section("Handed")
    feed_id = _ingest_indexed(dated_story(section))
    assert service.render_single_flight(feed_id) == 1
    files_before = _files(feed_id)
    first = dated_story(section)
    _ingest_indexed(first)
    late = dated_story(section)
    _change_during_render(monkeypatch, feed_id, late, queue_task=True)
    assert service.render_single_flight(feed_id) == 1  # the queued task is behind it: no second render here
    client = get_redis()
    assert not client.exists(state.lock_key(feed_id))
    assert first["id"] in _stored_ids(feed_id)
    assert late["id"] not in _stored_ids(feed_id) and not state.up_to_date(client, feed_id)
    # The files were left to that task: the feed changed under this render, whose files were just written.
    assert _files(feed_id) == files_before

    # What the queued task does when it starts (workers/feeds.py render with mark=False).
    state.take_request(client, feed_id)
    assert not state.up_to_date(client, feed_id)
    assert service.render_single_flight(feed_id) == 1
    assert {late["id"], first["id"]} <= set(_stored_ids(feed_id)) and state.up_to_date(client, feed_id)
    stored = state.read_bodies(get_redis(decode=False), feed_id, list(FORMATS))
    assert _files(feed_id) == stored


def test_a_queued_task_whose_changes_are_rendered_does_nothing(redis_client):
    client = get_redis()
    feed_id = _ingest_indexed(dated_story(unique_section("Covered")))
    assert state.request_render(client, feed_id)
    service.render_single_flight(feed_id)  # another worker's render got there first
    state.take_request(client, feed_id)
    assert state.up_to_date(client, feed_id)


def test_files_are_written_at_least_every_interval_under_a_long_burst(redis_client, monkeypatch):
    section = unique_section("Interval")
    feed_id = _ingest_indexed(dated_story(section))
    assert service.render_single_flight(feed_id) == 1
    files_before = _files(feed_id)
    _ingest_indexed(dated_story(section))
    _change_during_render(monkeypatch, feed_id, dated_story(section), queue_task=True)
    monkeypatch.setattr(service, "FILES_EVERY_S", 0.0)
    assert service.render_single_flight(feed_id) == 1
    # Written although the feed changed under the render: the files are never older than the interval.
    assert _files(feed_id) != files_before
    assert _files(feed_id) == state.read_bodies(get_redis(decode=False), feed_id, list(FORMATS))


def test_a_burst_through_the_workers_costs_fewer_renders_and_ends_complete(celery_worker, api_server, http):
    section = unique_section("Burst")
    stories = [dated_story(section) for _ in range(30)]
    for story in stories:
        post(http, api_server, story)
    feed_id = _section_feed(stories[0])
    client = get_redis()
    wait_for(lambda: set(_stored_ids(feed_id) if client.hexists(state.doc_key(feed_id), "gen") else ())
             >= {s["id"] for s in stories}, timeout=60, message="every story in its section feed")
    wait_for(lambda: state.up_to_date(client, feed_id) and not client.exists(state.lock_key(feed_id))
             and not client.exists(state.queued_key(feed_id)), timeout=30, message="the feed settled")
    assert int(state.status(client, feed_id)["renders"]) <= len(stories)
    wait_for(lambda: _files(feed_id) == state.read_bodies(get_redis(decode=False), feed_id, list(FORMATS)),
             timeout=30, message="the files hold the stored documents")


def test_a_render_made_in_place_of_a_task_queues_it_only_for_what_changed_meanwhile(redis_client, monkeypatch):
    client, section = get_redis(), unique_section("InPlace")
    feed_id = _ingest_indexed(dated_story(section))
    assert state.request_render(client, feed_id)  # what apply_event does before it renders the section here
    assert service.render_single_flight(feed_id) == 1
    assert state.settle_request(client, feed_id) and not client.exists(state.queued_key(feed_id))

    _ingest_indexed(dated_story(section))
    assert state.request_render(client, feed_id)
    late = dated_story(section)
    _change_during_render(monkeypatch, feed_id, late, queue_task=False)  # the change finds the request taken
    assert service.render_single_flight(feed_id) == 1  # released: the request says a render is owed
    assert not state.settle_request(client, feed_id) and client.exists(state.queued_key(feed_id))
    state.take_request(client, feed_id)  # the task the worker queues then
    assert service.render_single_flight(feed_id) == 1 and late["id"] in _stored_ids(feed_id)
