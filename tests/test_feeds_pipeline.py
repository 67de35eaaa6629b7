"""The feeds channel end to end: API -> ingest -> real Celery workers -> Redis -> API and files."""

from __future__ import annotations

import datetime as dt
import email.utils

import pytest

from conftest import INGEST_AUTH, wait_for
from feeds_fixtures import dated_story, entries, post, titles, unique_section

from syndicate.config import get_settings
from syndicate.feeds import slugify
from syndicate.feeds.model import stable_id

pytestmark = pytest.mark.both_brokers

FORMATS = ("rss", "atom", "json")
TYPES = {"rss": "application/rss+xml", "atom": "application/atom+xml", "json": "application/feed+json"}


def feed_urls(api: str, section: str) -> dict[str, str]:
    urls = {f"all.{fmt}": f"{api}/feeds/all.{fmt}" for fmt in FORMATS}
    urls.update({f"sec.{fmt}": f"{api}/feeds/sections/{slugify(section)}.{fmt}" for fmt in FORMATS})
    return urls


def visible_everywhere(http, api, section, headline) -> bool:
    return all(headline in (titles(http, url) or []) for url in feed_urls(api, section).values())


@pytest.fixture()
def published(api_server, celery_worker, http):
    section = unique_section("Pipeline")
    article = dated_story(section, headline=f"Pipeline story {section}")
    post(http, api_server, article)
    wait_for(lambda: visible_everywhere(http, api_server, section, article["headline"]), timeout=20,
             message="the story in all six feed documents")
    return section, article


def test_story_appears_in_main_and_section_feeds_in_every_format(published, api_server, http):
    section, article = published
    for name, url in feed_urls(api_server, section).items():
        item = next(i for i in entries(http, url) if i["title"] == article["headline"])
        assert item["id"] == stable_id(article["id"]), name
        assert (item.get("link") or item.get("url")) == article["url"]


def test_conditional_get_headers_and_304(published, api_server, http):
    section, _ = published
    for fmt in FORMATS:
        url = f"{api_server}/feeds/sections/{slugify(section)}.{fmt}"
        first = http.get(url)
        assert first.status_code == 200
        assert first.headers["Content-Type"].startswith(TYPES[fmt])
        assert first.headers["Cache-Control"] == f"public, max-age={get_settings().feed_max_age}"
        etag, last_modified = first.headers["ETag"], first.headers["Last-Modified"]
        assert etag.startswith('"') and email.utils.parsedate_to_datetime(last_modified)

        again = http.get(url, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == etag
        assert http.get(url, headers={"If-None-Match": f'"other", W/{etag}'}).status_code == 304
        assert http.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
        assert http.get(url, headers={"If-Modified-Since": last_modified}).status_code == 304
        earlier = email.utils.format_datetime(
            email.utils.parsedate_to_datetime(last_modified) - dt.timedelta(seconds=1), usegmt=True)
        assert http.get(url, headers={"If-Modified-Since": earlier}).status_code == 200
        # If-None-Match wins over If-Modified-Since (RFC 9110).
        assert http.get(url, headers={"If-None-Match": '"other"', "If-Modified-Since": last_modified}).status_code == 200

        head = http.head(url)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["ETag"] == etag and int(head.headers["Content-Length"]) == len(first.content)


def test_files_in_feed_dir_match_the_served_bytes(published, api_server, http):
    section, _ = published
    feed_dir = get_settings().feed_dir
    for fmt in FORMATS:
        path = feed_dir / "sections" / f"{slugify(section)}.{fmt}"
        served = http.get(f"{api_server}/feeds/sections/{slugify(section)}.{fmt}").content
        wait_for(lambda: path.exists() and path.read_bytes() == served, message=f"{path} written")
    assert not [p for p in (feed_dir / "sections").iterdir() if p.name.endswith(".tmp")]


def test_update_rerenders_in_place_and_retraction_removes(published, api_server, http):
    section, article = published
    url = f"{api_server}/feeds/sections/{slugify(section)}.atom"
    etag = http.get(url).headers["ETag"]
    updated = {**article, "version": 2, "headline": article["headline"] + " (updated)",
               "dateModified": "2031-06-01T10:00:00Z"}
    post(http, api_server, updated)
    wait_for(lambda: updated["headline"] in (titles(http, url) or []), message="updated headline")
    items = entries(http, url)
    assert [i.id for i in items] == [stable_id(article["id"])]  # in place: same id, no second item
    assert items[0].updated_parsed[:3] == (2031, 6, 1)
    assert http.get(url, headers={"If-None-Match": etag}).status_code == 200  # the ETag moved

    response = http.delete(f"{api_server}/v1/articles/{article['id']}", headers=INGEST_AUTH)
    assert response.status_code == 202
    for fmt in FORMATS:
        wait_for(lambda: titles(http, f"{api_server}/feeds/sections/{slugify(section)}.{fmt}") == [],
                 message=f"retracted story gone from {fmt}")
        # The main feed renders in its own task: it follows, in no set order with the section feed.
        main = f"{api_server}/feeds/all.{fmt}"
        wait_for(lambda: titles(http, main) is not None and updated["headline"] not in titles(http, main),
                 message=f"retracted story gone from the main feed's {fmt}")


def test_feed_index_and_unknown_feeds(published, api_server, http):
    section, _ = published
    listing = http.get(f"{api_server}/feeds").json()["feeds"]
    mine = next(f for f in listing if f["section"] == section)
    assert mine["id"] == f"sections/{slugify(section)}" and mine["items"] == 1
    assert mine["urls"]["json"].endswith(f"/feeds/sections/{slugify(section)}.json")
    assert http.get(f"{api_server}/feeds/sections/no-such-section.rss").status_code == 404
    assert http.get(f"{api_server}/feeds/all.xml").status_code == 404
    assert http.get(f"{api_server}/feeds/sections/US:x*.rss").status_code == 404
    assert http.post(f"{api_server}/feeds/all.rss").status_code == 405


def test_a_backdated_story_moves_last_modified_so_if_modified_since_sees_it(published, api_server, http):
    section, article = published
    url = f"{api_server}/feeds/sections/{slugify(section)}.rss"
    first = http.get(url)
    older = dated_story(section, dt.datetime(2001, 1, 1, tzinfo=dt.timezone.utc), headline=f"Backdated {section}")
    post(http, api_server, older)
    wait_for(lambda: older["headline"] in (titles(http, url) or []), message="backdated story in the feed")
    # The feed's own updated date did not move (the new item is older), but its bytes did.
    assert http.get(url, headers={"If-Modified-Since": first.headers["Last-Modified"]}).status_code == 200
    after = http.get(url)
    assert after.headers["ETag"] != first.headers["ETag"]
    assert (email.utils.parsedate_to_datetime(after.headers["Last-Modified"])
            > email.utils.parsedate_to_datetime(first.headers["Last-Modified"]))
