"""Every example story (Arabic RTL, Japanese, Russian, no image, several authors, a correction, a long
story) round-trips through RSS, Atom and JSON Feed as a reader parses them: feedparser with bozo == 0,
the JSON Feed 1.1 schema, language, authors, corrections, and non-Latin text byte for byte."""

from __future__ import annotations

import html
import json
from pathlib import Path

import feedparser
import jsonschema
import pytest
from lxml import etree

from syndicate.config import get_settings
from syndicate.feeds import feed_spec, render_feed
from syndicate.feeds.model import stable_id

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples" / "articles").glob("*.json"))
SCHEMA = json.loads((Path(__file__).parent / "data" / "jsonfeed-1.1.schema.json").read_text())
DC = "{http://purl.org/dc/elements/1.1/}"
MEDIA = "{http://search.yahoo.com/mrss/}"


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def render_one(article: dict):
    return render_feed(feed_spec("all", get_settings(), version="1"), [article], 50)


def texts(article: dict) -> list[str]:
    """Every plain-text field a reader must get back unchanged inside the HTML content."""
    out = [b["text"] for b in article["body"]["blocks"]]
    out += (article.get("quickLooks") or {}).get("items") or []
    out += [img["caption"] for img in article.get("images") or [] if img.get("caption")]
    out += [c["text"] for c in article.get("corrections") or []]
    return out


def test_the_examples_cover_what_the_feeds_must_carry():
    stories = [load(p) for p in EXAMPLES]
    languages = {s["language"].split("-")[0] for s in stories}
    assert {"ar", "ja", "ru", "en"} <= languages
    assert any(not s.get("images") for s in stories)
    assert any(len(s["byline"]["authors"]) > 1 for s in stories)
    assert any(s.get("corrections") for s in stories)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_round_trips_through_every_format(path):
    article = load(path)
    docs = render_one(article).documents
    lang = article["language"]
    names = [a["name"] for a in article["byline"]["authors"]]

    for fmt in ("rss", "atom"):
        body = docs[fmt].body
        etree.fromstring(body)  # well-formed for lxml
        parsed = feedparser.parse(body)
        assert parsed.bozo == 0, (fmt, parsed.get("bozo_exception"))
        assert parsed.feed.language == lang
        [entry] = parsed.entries
        assert entry.id == stable_id(article["id"])
        assert entry.title == article["headline"]  # byte-exact, whatever the script
        assert entry.summary == article["summary"]
        assert entry.link == article["url"]
        assert [a["name"] for a in entry.authors] == names, fmt
        content = entry.content[0].value
        for text in texts(article):
            assert html.escape(text, quote=False) in content, (fmt, text[:40])
        if fmt == "atom":
            assert entry.content[0].language == lang  # the entry's own xml:lang
            assert [a.get("href") for a in entry.authors] == [a.get("url") for a in article["byline"]["authors"]]
        else:
            assert entry.language == lang  # dc:language on the item
        # Raw bytes: non-Latin text is written as UTF-8, not as character references.
        assert article["headline"].encode("utf-8") in body
        assert article["byline"]["authors"][0]["name"].encode("utf-8") in body

    doc = json.loads(docs["json"].body.decode("utf-8"))
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(doc)
    assert doc["language"] == lang
    [item] = doc["items"]
    assert item["language"] == lang
    assert item["title"] == article["headline"] and item["summary"] == article["summary"]
    assert [a["name"] for a in item["authors"]] == names
    assert [a.get("url") for a in item["authors"]] == [a.get("url") for a in article["byline"]["authors"]]
    for text in texts(article):
        assert html.escape(text, quote=False) in item["content_html"], text[:40]
    assert article["headline"].encode("utf-8") in docs["json"].body
    assert item["_syndicate"]["dateline"] == article["body"].get("dateline", "")
    assert item["_syndicate"]["quick_looks"]["items"] == (article.get("quickLooks") or {}).get("items", [])

    rtl = lang.split("-")[0] == "ar"
    assert item["content_html"].startswith(f'<div lang="{lang}" dir="rtl">') is rtl

    rss_item = etree.fromstring(docs["rss"].body).find("channel/item")
    images = article.get("images") or []
    assert len(rss_item.findall(f"{MEDIA}content")) == len(images)
    assert (rss_item.find(f"{MEDIA}thumbnail") is not None) is bool(images)
    assert ("image" in item) is bool(images)
    assert ("<figure>" in item["content_html"]) is bool(images)
    assert [c.text for c in rss_item.findall(f"{DC}creator")] == names


def test_corrections_show_in_the_content_of_every_format():
    article = next(a for a in map(load, EXAMPLES) if a.get("corrections"))
    docs = render_one(article).documents
    correction = html.escape(article["corrections"][0]["text"], quote=False)
    for fmt in ("rss", "atom"):
        content = feedparser.parse(docs[fmt].body).entries[0].content[0].value
        assert 'class="corrections"' in content and correction in content
    assert correction in json.loads(docs["json"].body)["items"][0]["content_html"]


def test_a_mixed_language_main_feed_labels_each_item_and_the_feed_by_its_majority():
    stories = [load(p) for p in EXAMPLES]
    docs = render_feed(feed_spec("all", get_settings(), version="1"), stories, 50).documents
    by_id = {stable_id(s["id"]): s["language"] for s in stories}
    majority = max({s["language"] for s in stories}, key=lambda lang: sum(s["language"] == lang for s in stories))
    atom = feedparser.parse(docs["atom"].body)
    rss = feedparser.parse(docs["rss"].body)
    assert atom.bozo == 0 and rss.bozo == 0
    assert atom.feed.language == rss.feed.language == majority
    assert {e.id: e.content[0].language for e in atom.entries} == by_id
    assert {e.id: e.language for e in rss.entries} == by_id
    doc = json.loads(docs["json"].body)
    assert doc["language"] == majority
    assert {i["id"]: i["language"] for i in doc["items"]} == by_id
    # Every story's non-Latin headline survives, byte for byte, in the one document.
    for fmt in ("rss", "atom", "json"):
        for story in stories:
            assert story["headline"].encode("utf-8") in docs[fmt].body
