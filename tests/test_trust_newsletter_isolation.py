"""One story an edition cannot carry is skipped and dead-lettered; the rest goes out (issue 8, classes 3 and 6)."""

from __future__ import annotations

import json

import pytest

from conftest import unique_article, wait_for
from newsletter_fixtures import addresses, make_list, publish, smtp_sink, subscribe_all

from syndicate import deadletters, events
from syndicate.newsletter import editions, service
from syndicate.schemas import validate_article
from syndicate.store import get_redis, key


@pytest.fixture()
def sink(redis_client):
    return smtp_sink()


def _reader(config: dict, stories: list[dict]) -> str:
    """Publish ``stories`` to the list and give it one subscriber."""
    for story in stories:
        publish(story)
    reader = addresses(1, "iso")[0]
    subscribe_all(config["id"], [reader])
    return reader


def _dead_letters_for(article_id: str) -> list[dict]:
    return [d for d in deadletters.listing(1000) if d.get("article_id") == article_id]


CORRUPTIONS = {
    "not JSON": lambda good: "{\"id\": \"truncated",
    "wrong shape": lambda good: json.dumps({**good, "quickLooks": "not an object", "images": "none"}),
    # Loads and shapes fine; only the template fails on it (its height overflows the scaling arithmetic).
    "cannot render": lambda good: json.dumps({**good, "images": [{"url": "https://img.example/a.jpg", "alt": "a",
                                                                   "role": "lead", "width": 1, "height": 10**400}]}),
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_a_corrupt_story_is_skipped_and_dead_lettered_while_the_edition_goes_out(sink, kind):
    config = make_list()
    section = config["sections"][0]
    first, bad, last = (unique_article(section=section, headline=f"Story {n} {section}") for n in ("one", "two", "three"))
    reader = _reader(config, [first, bad, last])
    before = deadletters.totals().get("newsletter", 0)
    # The stored record goes bad behind the ingest's back (a partial write, an old release's bug).
    get_redis().hset(key("article", bad["id"]), "json", CORRUPTIONS[kind](events.get_article(bad["id"])))

    eid = service.open_manual(config["id"])
    result = service.run_edition(eid)

    assert result["state"] == "sent" and result["counts"]["sent"] == 1 and result["stories"] == 2
    (mail,) = sink.received(reader)
    text = mail.get_body(("plain",)).get_content()
    assert first["headline"] in text and last["headline"] in text and bad["headline"] not in text
    (letter,) = _dead_letters_for(bad["id"])
    assert letter["channel"] == "newsletter" and letter["subject"] == eid and letter["error"]
    assert (letter["task"], letter["args"]) == ("syndicate.newsletter.stage_article", [config["id"], bad["id"]])
    assert deadletters.totals()["newsletter"] == before + 1


def test_the_dead_letter_task_puts_the_fixed_story_in_the_next_edition(sink, celery_worker):
    config = make_list()
    section = config["sections"][0]
    good, bad = (unique_article(section=section, headline=f"{n} story {section}") for n in ("Good", "Bad"))
    reader = _reader(config, [good, bad])
    get_redis().hset(key("article", bad["id"]), "json", "corrupt")
    service.run_edition(service.open_manual(config["id"]))
    (letter,) = _dead_letters_for(bad["id"])

    # The newsroom republishes it (a new version), the operator requeues the dead letter.
    get_redis().delete(key("article", bad["id"]))
    publish({**bad, "version": bad.get("version", 1) + 1})
    get_redis().hdel(key("nl", "pending", config["id"]), bad["id"])  # only the requeue may stage it
    celery_worker.app.send_task(letter["task"], args=letter["args"])
    wait_for(lambda: bad["id"] in editions.staged(config["id"]), message="story staged again")
    result = service.run_edition(service.open_manual(config["id"]))
    assert result["stories"] == 1
    second = sink.received(reader)[-1].get_body(("plain",)).get_content()
    assert bad["headline"] in second and good["headline"] not in second


@pytest.mark.parametrize("value", ["2016-12-31T23:59:60Z", "2026-02-05t10:00:00z", "9999-12-29T10:00:00-14:00",
                                   "0001-01-02T23:00:00+14:00"])
def test_every_date_the_schema_accepts_goes_through_an_edition(sink, value):
    config = make_list(timezone="Pacific/Kiritimati")
    section = config["sections"][0]
    odd = unique_article(section=section, datePublished=value, dateModified=value, headline=f"Odd date {value}")
    normal = unique_article(section=section, headline=f"Normal date {section}")
    validate_article(odd)  # accepted at ingest: so every channel must handle it
    reader = _reader(config, [odd, normal])
    result = service.run_edition(service.open_manual(config["id"]))
    assert result["state"] == "sent" and result["stories"] == 2
    (mail,) = sink.received(reader)
    text = mail.get_body(("plain",)).get_content()
    assert odd["headline"] in text and normal["headline"] in text
    assert odd["headline"] in mail.get_body(("html",)).get_content()
    assert not _dead_letters_for(odd["id"])


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_the_preview_shows_the_rest_and_records_nothing(sink, kind):
    config = make_list()
    good, bad = (unique_article(section=config["sections"][0], headline=f"{n} preview {kind}") for n in ("Good", "Bad"))
    _reader(config, [good, bad])
    get_redis().hset(key("article", bad["id"]), "json", CORRUPTIONS[kind](events.get_article(bad["id"])))
    text, count = service.preview(config["id"], "text")
    assert count == 1 and good["headline"] in text and bad["headline"] not in text
    assert not _dead_letters_for(bad["id"])  # a preview changes nothing
