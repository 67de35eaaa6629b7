"""The feeds channel under faults, with the real API, real Celery workers and a real Redis (issue 8).

* One story that cannot be rendered (a corrupt record written straight to the
  store, as a bug would leave it) is skipped and dead-lettered once, while its
  main and section feeds go on rendering every later story (class 6).
* The static feed directory unwritable for a while: the API keeps serving from
  Redis, the error shows on the feed in ``syndicate feeds list``, and the files
  catch up once the directory is back (the fault suite).
* A story dated with a leap second and lower-case ``t``/``z`` goes through the
  whole pipeline into every document (class 3).
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from conftest import wait_for
from feeds_fixtures import dated_story, post, titles, unique_section

from syndicate import deadletters
from syndicate.cli.main import cli
from syndicate.config import get_settings
from syndicate.feeds import MAIN_FEED, section_feed_id, slugify
from syndicate.store import key

FORMATS = ("rss", "atom", "json")


def feed_urls(api: str, section: str) -> list[str]:
    return ([f"{api}/feeds/all.{fmt}" for fmt in FORMATS]
            + [f"{api}/feeds/sections/{slugify(section)}.{fmt}" for fmt in FORMATS])


def in_every_document(http, api: str, section: str, headline: str) -> bool:
    return all(headline in (titles(http, url) or []) for url in feed_urls(api, section))


def feeds_list() -> list[dict]:
    listed = CliRunner().invoke(cli, ["feeds", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    return json.loads(listed.output)


def test_a_story_that_cannot_be_rendered_is_skipped_and_dead_lettered_once(api_server, celery_worker, http,
                                                                          redis_client):
    section = unique_section("Broken")
    before = dated_story(section, headline=f"Before {section}")
    victim = dated_story(section, headline=f"Victim {section}")
    for article in (before, victim):
        post(http, api_server, article)
    wait_for(lambda: in_every_document(http, api_server, section, victim["headline"]), timeout=20,
             message="both stories in every document")

    # A bug or a bad migration leaves a record no renderer can read: the headline is no longer text.
    # Written straight to the store (same version), so ingest's validation never sees it.
    stored = json.loads(redis_client.hget(key("article", victim["id"]), "json"))
    stored["headline"] = {"html": "<b>not text</b>"}
    redis_client.hset(key("article", victim["id"]), "json", json.dumps(stored))

    for n in range(3):
        later = dated_story(section, headline=f"After {n} {section}")
        post(http, api_server, later)
        wait_for(lambda: in_every_document(http, api_server, section, later["headline"]), timeout=20,
                 message=f"later story {n} in the main and section feeds despite the broken one")
    for url in feed_urls(api_server, section):
        shown = titles(http, url)
        assert before["headline"] in shown and victim["headline"] not in shown, url

    letters = [d for d in deadletters.listing(10_000) if d["article_id"] == victim["id"]]
    assert len(letters) == 1, letters  # three more renders of two feeds, still one dead letter
    letter = letters[0]
    assert letter["channel"] == "feeds" and letter["task"] == "syndicate.feeds.render"
    assert letter["args"] in ([MAIN_FEED], [section_feed_id(section)])
    assert letter["error"].startswith("TypeError")

    # A fixed version (a new version from the newsroom) renders again.
    fixed = {**victim, "version": 2, "headline": f"Fixed {section}"}
    post(http, api_server, fixed)
    wait_for(lambda: in_every_document(http, api_server, section, fixed["headline"]), timeout=20,
             message="the fixed story back in every document")


@pytest.fixture()
def feed_dir_replaced_by_a_file():
    """The feed directory made unwritable in a way that also stops root (chmod does not): a regular file
    stands where the directory was. Yields a function that puts the directory back."""
    feed_dir = get_settings().feed_dir
    feed_dir.mkdir(parents=True, exist_ok=True)
    aside = feed_dir.with_name(feed_dir.name + ".aside")
    feed_dir.rename(aside)
    feed_dir.write_bytes(b"not a directory\n")

    def restore() -> None:
        if feed_dir.is_file():
            feed_dir.unlink()
            aside.rename(feed_dir)

    yield restore
    restore()


def test_an_unwritable_feed_dir_keeps_serving_records_the_error_and_catches_up(
        api_server, celery_worker, http, feed_dir_replaced_by_a_file):
    from syndicate.workers.feeds import sweep

    section = unique_section("Disk")
    feed_id = section_feed_id(section)
    story = dated_story(section, headline=f"Written while the disk is gone {section}")
    post(http, api_server, story)
    wait_for(lambda: in_every_document(http, api_server, section, story["headline"]), timeout=20,
             message="the API serving the story from Redis")

    row = wait_for(lambda: next((r for r in feeds_list() if r["id"] == feed_id and r["file_error"]), None),
                   message="the write error shown on the feed")
    assert "cannot write" in row["file_error"] and row["file_error_since"]
    table = CliRunner().invoke(cli, ["feeds", "list"])
    assert table.exit_code == 0 and "files not written" in table.output

    feed_dir_replaced_by_a_file()
    sweep.apply_async()  # the 30 s beat sweep, sent now rather than waited for

    feed_dir = get_settings().feed_dir
    for fmt in FORMATS:
        for path, url in ((feed_dir / "sections" / f"{slugify(section)}.{fmt}",
                           f"{api_server}/feeds/sections/{slugify(section)}.{fmt}"),
                          (feed_dir / f"all.{fmt}", f"{api_server}/feeds/all.{fmt}")):
            wait_for(lambda: path.is_file() and path.read_bytes() == http.get(url).content, timeout=20,
                     message=f"{path.name} caught up with the served document")
    wait_for(lambda: not next(r for r in feeds_list() if r["id"] == feed_id)["file_error"],
             message="the error cleared once the files are written")


def test_leap_second_and_lower_case_dates_go_through_the_pipeline(api_server, celery_worker, http):
    section = unique_section("Leap")
    story = dated_story(section, headline=f"Leap second {section}")
    story["datePublished"] = "2016-12-31t23:59:60z"
    story["dateModified"] = "2017-01-01t00:00:00.5+00:00"
    post(http, api_server, story)
    # Its section's documents, every format: dated 2016, it is older than the 50 newest stories
    # the run's other tests put in the main feed, so it need not be in that window.
    section_urls = feed_urls(api_server, section)[len(FORMATS):]
    wait_for(lambda: all(story["headline"] in (titles(http, url) or []) for url in section_urls), timeout=20,
             message="the leap-second story in every document")
    item = next(i for i in http.get(f"{api_server}/feeds/sections/{slugify(section)}.json").json()["items"]
                if i["title"] == story["headline"])
    assert item["date_published"] == "2016-12-31T23:59:59.999999Z"
