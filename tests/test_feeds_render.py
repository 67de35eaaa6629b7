"""Pure rendering: every format parses, round-trips the story, is stable, escapes and cleans text,
and each feedgen 1.0.0 defect listed in DESIGN.md stays worked around."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
from pathlib import Path

import feedparser
import jsonschema
import pytest
from lxml import etree

from conftest import load_seed, unique_article
from feeds_fixtures import shown

from syndicate.config import get_settings
from syndicate.feeds import feed_spec, render_feed, slugify
from syndicate.feeds.model import stable_id

SCHEMA = json.loads((Path(__file__).parent / "data" / "jsonfeed-1.1.schema.json").read_text())
NS = {"atom": "http://www.w3.org/2005/Atom", "media": "http://search.yahoo.com/mrss/",
      "dc": "http://purl.org/dc/elements/1.1/", "content": "http://purl.org/rss/1.0/modules/content/"}


def settings(**changes):
    return dataclasses.replace(get_settings(), **changes)


def render(articles, feed_id="all", size=50, removed_at=None, **changes):
    return render_feed(feed_spec(feed_id, settings(**changes), version="9.9"), articles, size, removed_at)


def story(n: int, section: str = "US", **changes) -> dict:
    article = unique_article(section=section, **changes)
    article["id"] = f"story-{n:03d}"
    minute = dt.datetime(2026, 2, 5, 12, 0, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=n)
    article["datePublished"] = article["dateModified"] = minute.isoformat().replace("+00:00", "Z")
    return article


@pytest.fixture(scope="module")
def seed_docs():
    return render([load_seed()], websub_hub="https://hub.example/", feed_icon="https://cdn.example/icon.png")


def parsed(doc):
    result = feedparser.parse(doc.body)
    assert result.bozo == 0, result.get("bozo_exception")
    return result


def test_rss_and_atom_parse_cleanly_and_are_well_formed(seed_docs):
    assert parsed(seed_docs.documents["rss"]).version == "rss20"
    assert parsed(seed_docs.documents["atom"]).version == "atom10"
    for fmt in ("rss", "atom"):
        etree.fromstring(seed_docs.documents[fmt].body)  # raises if not well-formed


def test_json_feed_validates_against_the_1_1_schema(seed_docs):
    doc = json.loads(seed_docs.documents["json"].body)
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(doc)
    assert doc["version"] == "https://jsonfeed.org/version/1.1"
    assert doc["home_page_url"] == get_settings().site_url
    assert doc["feed_url"].endswith("/feeds/all.json")


@pytest.mark.parametrize("fmt", ["rss", "atom"])
def test_every_item_field_round_trips_through_feedparser(seed_docs, fmt):
    seed = load_seed()
    entry = parsed(seed_docs.documents[fmt]).entries[0]
    assert entry.id == stable_id(seed["id"])
    assert entry.title == seed["headline"]
    assert entry.link == seed["url"]
    assert entry.summary == seed["summary"]
    html = entry.content[0].value
    assert "KYIV, Ukraine —</strong> In a rare development" in html
    assert "<blockquote><p>This can’t be a situation" in html and "— Volodymyr Zelenskyy, he said on social media" in html
    assert seed["quickLooks"]["items"][0] in html and "<li>" in html
    assert "AP Photo/Sergei Grits" in html and "<figcaption>" in html
    assert [a["name"] for a in entry.authors] == ["J. Mansour"]
    terms = [t.term for t in entry.tags]
    assert terms[0] == "US" and {"Top Story", "Russia", "NATO"} <= set(terms)
    assert entry.published_parsed[:5] == (2026, 2, 5, 12, 30)
    if fmt == "atom":
        assert entry.updated_parsed[:5] == (2026, 2, 5, 12, 30)


def test_rss_carries_media_rss_and_dublin_core(seed_docs):
    root = etree.fromstring(seed_docs.documents["rss"].body)
    item = root.find("channel/item")
    assert item.find("content:encoded", NS) is not None
    assert [c.text for c in item.findall("dc:creator", NS)] == ["J. Mansour"]
    contents = item.findall("media:content", NS)
    assert contents[0].get("url").endswith("darnytsia-thermal-power-plant-kyiv.jpg")
    assert contents[0].get("isDefault") == "true" and contents[0].get("type") == "image/jpeg"
    assert contents[0].find("media:description", NS).text.startswith("Workers clean up damage")
    assert contents[0].find("media:credit", NS).text == "AP Photo/Sergei Grits"
    assert item.find("media:thumbnail", NS).get("url") == contents[0].get("url")
    self_link = root.find("channel/atom:link[@rel='self']", NS)
    assert self_link.get("href").endswith("/feeds/all.rss")


def test_json_feed_item_fields(seed_docs):
    seed = load_seed()
    item = json.loads(seed_docs.documents["json"].body)["items"][0]
    assert item["id"] == stable_id(seed["id"]) and item["url"] == seed["url"]
    assert item["title"] == seed["headline"] and item["summary"] == seed["summary"]
    assert item["image"] == seed["images"][0]["url"]
    assert item["authors"] == [{"name": "J. Mansour"}]
    assert item["tags"][0] == "US" and "Diplomacy" in item["tags"]
    assert "<blockquote>" in item["content_html"]
    ext = item["_syndicate"]
    assert ext["dateline"] == "KYIV, Ukraine"
    assert ext["quick_looks"]["items"] == seed["quickLooks"]["items"]
    assert [p["credit"] for p in ext["photos"]] == ["AP Photo/Sergei Grits", "AP Photo/Efrem Lukatsky"]
    assert item["date_published"] == "2026-02-05T12:30:00Z"


def test_feed_level_metadata(seed_docs):
    for fmt in ("rss", "atom"):
        feed = parsed(seed_docs.documents[fmt]).feed
        assert feed.title == get_settings().feed_title
        assert feed.language == "en-US"
        assert feed.generator == "syndicate"
        assert feed.updated_parsed[:5] == (2026, 2, 5, 12, 30)  # the newest change, not the clock
        rels = {link.rel: link.href for link in feed.links}
        assert rels["hub"] == "https://hub.example/"
        assert rels["self"].endswith(f"/feeds/all.{fmt}")
        assert rels["alternate"] == get_settings().site_url
    assert parsed(seed_docs.documents["atom"]).feed.icon == "https://cdn.example/icon.png"
    doc = json.loads(seed_docs.documents["json"].body)
    assert doc["hubs"] == [{"type": "WebSub", "url": "https://hub.example/"}]
    assert doc["icon"] == "https://cdn.example/icon.png"


def test_same_state_renders_byte_identical_documents():
    articles = [story(n) for n in range(5)]
    first = render(articles)
    again = render(list(reversed(copy.deepcopy(articles))))
    for fmt in ("rss", "atom", "json"):
        assert first.documents[fmt].body == again.documents[fmt].body
        assert first.documents[fmt].etag == again.documents[fmt].etag
    changed = copy.deepcopy(articles)
    changed[2]["headline"] = "A corrected headline"
    assert render(changed).documents["rss"].etag != first.documents["rss"].etag


def test_window_holds_the_newest_n_newest_first():
    result = render([story(n) for n in range(12)], size=5)
    assert list(result.item_ids) == [f"story-{n:03d}" for n in (11, 10, 9, 8, 7)]
    entries = parsed(result.documents["atom"]).entries
    assert [e.title for e in entries] == [story(n)["headline"] for n in (11, 10, 9, 8, 7)]


def test_update_keeps_the_id_and_moves_updated():
    original = story(1)
    updated = {**copy.deepcopy(original), "version": 2, "headline": "Updated", "dateModified": "2026-02-06T09:00:00Z"}
    before = parsed(render([original]).documents["atom"]).entries[0]
    after = parsed(render([updated]).documents["atom"])
    assert after.entries[0].id == before.id
    assert after.entries[0].updated_parsed[:4] == (2026, 2, 6, 9)
    assert after.feed.updated_parsed[:4] == (2026, 2, 6, 9)


def test_removal_time_dates_the_feed():
    moment = dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc)
    result = render([story(1)], removed_at=moment)
    assert parsed(result.documents["rss"]).feed.updated_parsed[:1] == (2027,)
    assert result.documents["rss"].last_modified == "Fri, 01 Jan 2027 00:00:00 GMT"


def test_markup_in_text_fields_shows_as_text_in_every_format():
    evil = "<script>alert(1)</script>"
    article = story(1, headline=evil, summary=f"Summary {evil}")
    article["body"]["blocks"][0]["text"] = f"Body {evil}"
    article["byline"]["authors"] = [{"name": f"Eve {evil}"}]
    article["images"][0]["caption"] = f"Caption {evil}"
    result = render([article])
    for fmt in ("rss", "atom"):
        entry = parsed(result.documents[fmt]).entries[0]
        assert shown(entry.title_detail.value, entry.title_detail.type)[0] == evil
        assert "<script>" not in entry.content[0].value
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in entry.content[0].value
    item = json.loads(result.documents["json"].body)["items"][0]
    assert item["title"] == evil and "<script>" not in item["content_html"]
    assert "&lt;script&gt;" in item["content_html"]


def test_xml_invalid_control_characters_are_stripped():
    article = story(1, headline="Bell\x07 and\x00 null\x1f done", summary="Tab\tstays\x0b")
    article["body"]["blocks"][0]["text"] = "Escape\x1b[31m code"
    result = render([article])
    for fmt in ("rss", "atom"):
        entry = parsed(result.documents[fmt]).entries[0]
        assert entry.title == "Bell and null done"
        assert "Escape[31m code" in entry.content[0].value
    assert json.loads(result.documents["json"].body)["items"][0]["title"] == "Bell and null done"


def test_section_feed_names_and_urls():
    spec = feed_spec("sections/economie-finance", settings(), "Économie & Finance")
    result = render_feed(spec, [story(1, section="Économie & Finance")], 50)
    feed = parsed(result.documents["rss"]).feed
    # RSS text is HTML to readers: the "&" arrives escaped and the reader shows it as "&".
    assert shown(feed.title_detail.value, feed.title_detail.type)[0] == f"{get_settings().feed_title}: Économie & Finance"
    assert parsed(result.documents["atom"]).feed.title == f"{get_settings().feed_title}: Économie & Finance"
    assert {link.rel: link.href for link in feed.links}["self"].endswith("/feeds/sections/economie-finance.rss")


@pytest.mark.parametrize("section, slug", [
    ("US", "us"), ("Top Story", "top-story"), ("Économie & Finance", "economie-finance"),
    ("../../etc/passwd", "etc-passwd"), ("  World  ", "world"),
])
def test_section_slugs_are_safe_names(section, slug):
    assert slugify(section) == slug


def test_slugs_for_text_without_ascii_are_stable_and_safe():
    assert slugify("日本") == slugify("日本") != slugify("中国")
    long = slugify("x" * 200)
    assert len(long) <= 60 and long != slugify("x" * 199)
    for s in (slugify("日本"), long, slugify("a/b\\c:d?e#f")):
        assert s.replace("-", "").isalnum() and s.isascii()


# --- feedgen 1.0.0 defects (DESIGN.md), one test each -------------------------------------------

def test_defect_atom_entry_links_keep_rel_and_type():
    entry = etree.fromstring(render([story(1)]).documents["atom"].body).find("atom:entry", NS)
    links = entry.findall("atom:link", NS)
    assert [(l.get("rel"), l.get("type")) for l in links] == [("alternate", "text/html")]


def test_defect_no_media_group_around_a_single_image():
    article = story(1)
    article["images"] = article["images"][:1]
    body = render([article]).documents["rss"].body
    assert b"media:group" not in body and b"<media:content" in body


def test_defect_media_description_and_credit_exist():
    item = etree.fromstring(render([story(1)]).documents["rss"].body).find("channel/item")
    content = item.find("media:content", NS)
    assert content.find("media:description", NS) is not None and content.find("media:credit", NS) is not None


def test_defect_no_misnamed_syndication_elements():
    body = render([story(1)]).documents["rss"].body
    assert b"purl.org/rss/1.0/modules/syndication" not in body
    assert etree.fromstring(body).find("channel/ttl").text == "1"


def test_defect_rss_channel_link_is_the_site_not_the_feed():
    channel = etree.fromstring(render([story(1)]).documents["rss"].body).find("channel")
    assert channel.find("link").text == get_settings().site_url


def test_defect_no_rss_author_beside_dc_creator():
    item = etree.fromstring(render([story(1)]).documents["rss"].body).find("channel/item")
    assert item.find("author") is None and item.find("dc:creator", NS) is not None


def test_defect_updated_is_never_now():
    empty = render([])
    assert parsed(empty.documents["atom"]).feed.updated_parsed[:1] == (1970,)
    root = etree.fromstring(render([story(1)]).documents["rss"].body)
    assert root.find("channel/lastBuildDate").text == "Thu, 05 Feb 2026 12:01:00 +0000"


def test_defect_content_encoded_present_even_without_a_summary():
    article = story(1)
    article.pop("summary")
    item = etree.fromstring(render([article]).documents["rss"].body).find("channel/item")
    assert item.find("content:encoded", NS) is not None
    assert item.find("description").text == article["headline"]


def test_spliced_documents_equal_one_whole_feedgen_render():
    from syndicate.feeds.jsonfeed import _item
    from syndicate.feeds.model import feed_updated, window
    from syndicate.feeds.xmlfeeds import render_atom, render_atom_whole, render_rss, render_rss_whole

    spec = feed_spec("sections/us", settings(websub_hub="https://hub.example/", feed_icon="https://cdn.example/i.png"))
    items = window([story(n) for n in range(7)] + [load_seed()], 50)
    updated = feed_updated(items)
    assert render_rss(spec, items, updated) == render_rss_whole(spec, items, updated)
    assert render_atom(spec, items, updated) == render_atom_whole(spec, items, updated)
    doc = json.loads(render([story(n) for n in range(7)] + [load_seed()], feed_id="sections/us").documents["json"].body)
    assert doc["items"] == [_item(i) for i in items]


@pytest.mark.parametrize("inm, ims, expected", [
    ('"abc"', None, True), ('W/"abc"', None, True), ('"x", "abc"', None, True), ("*", None, True),
    ('"x"', "Thu, 05 Feb 2026 12:30:00 GMT", False),
    (None, "Thu, 05 Feb 2026 12:30:00 GMT", True), (None, "Thu, 05 Feb 2026 12:29:59 GMT", False),
    (None, "not a date", False), (None, None, False),
])
def test_conditional_request_rules(inm, ims, expected):
    from syndicate.feeds.conditional import not_modified

    assert not_modified(inm, ims, '"abc"', "Thu, 05 Feb 2026 12:30:00 GMT") is expected


def test_last_modified_moves_whenever_the_bytes_change():
    from syndicate.feeds.render import stamp_last_modified

    now = dt.datetime(2026, 3, 1, 9, 0, 0, 500000, tzinfo=dt.timezone.utc)
    newest = story(50)
    first = render([newest])
    fresh = stamp_last_modified(first, {}, now)
    assert fresh.documents["rss"].last_modified == first.documents["rss"].last_modified  # the content date
    stored = {fmt: (doc.etag, doc.last_modified) for fmt, doc in fresh.documents.items()}

    # Same bytes: the stored date stays.
    again = stamp_last_modified(render([newest]), stored, now)
    assert {f: d.last_modified for f, d in again.documents.items()} == {f: lm for f, (_e, lm) in stored.items()}

    # A backdated story changes the bytes but not the feed's updated date: Last-Modified must still move,
    # or a reader polling with If-Modified-Since alone would get 304 and miss it.
    backdated = stamp_last_modified(render([newest, story(1)]), stored, now)
    for fmt, doc in backdated.documents.items():
        assert doc.etag != stored[fmt][0]
        assert doc.last_modified == "Sun, 01 Mar 2026 09:00:00 GMT"

    # Changed bytes whose stored date is later than now (same-second renders, future-dated stories):
    # one second past the stored date, so each change still moves it.
    future = {fmt: (etag, "Fri, 01 Jan 2100 00:00:00 GMT") for fmt, (etag, _lm) in stored.items()}
    later = stamp_last_modified(render([newest, story(1)]), future, now)
    assert later.documents["atom"].last_modified == "Fri, 01 Jan 2100 00:00:01 GMT"
