"""The article schema and its validator: examples pass, bad articles fail at the exact JSON path.

Bad articles are the seed story with one small change each, so a failure points at
exactly one rule of src/syndicate/schemas/article.schema.json.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from syndicate.errors import ValidationFailed
from syndicate.schemas import json_path, load_schema, problems, validate

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples" / "articles").glob("*.json"))
SEED_PATH = ROOT / "examples" / "articles" / "us-russia-military-talks.json"


def seed() -> dict[str, Any]:
    return json.loads(SEED_PATH.read_text(encoding="utf-8"))


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def paths_of(doc: Any) -> list[str]:
    """Problem paths in reported order; one fault is one problem, so a path appears once per fault."""
    return [p.path for p in problems("article", doc)]


# --- mutation helpers: each returns a function that changes a copy of the seed ---------------

Key = str | int


def set_(path: list[Key], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        target: Any = doc
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return change


def drop(path: list[Key]) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        target: Any = doc
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]

    return change


# (case id, change to the seed, the exact paths problems() must report, in order)
BAD_ARTICLES: list[tuple[str, Callable[[dict[str, Any]], None], list[str]]] = [
    ("headline-multi-line", set_(["headline"], "U.S. and Russia\nRestart Talks"), ["$.headline"]),
    ("headline-empty", set_(["headline"], ""), ["$.headline"]),
    ("headline-blank", set_(["headline"], "   "), ["$.headline"]),
    ("headline-too-long", set_(["headline"], "x" * 301), ["$.headline"]),
    ("headline-not-string", set_(["headline"], 42), ["$.headline"]),
    ("summary-empty", set_(["summary"], ""), ["$.summary"]),
    ("block-text-blank", set_(["body", "blocks", 3, "text"], " \n\t "), ["$.body.blocks[3].text"]),
    ("block-text-too-long", set_(["body", "blocks", 3, "text"], "a" * 20001), ["$.body.blocks[3].text"]),
    ("block-type-unknown", set_(["body", "blocks", 0, "type"], "html"), ["$.body.blocks[0].type"]),
    ("block-not-object", set_(["body", "blocks", 12], "a paragraph"), ["$.body.blocks[12]"]),
    ("quote-without-speaker", drop(["body", "blocks", 9, "speaker"]), ["$.body.blocks[9]"]),
    ("block-unknown-key", set_(["body", "blocks", 1, "html"], "<p>x</p>"), ["$.body.blocks[1].html"]),
    ("body-blocks-empty", set_(["body", "blocks"], []), ["$.body.blocks"]),
    ("body-without-blocks", drop(["body", "blocks"]), ["$.body"]),
    ("body-not-object", set_(["body"], "text"), ["$.body"]),
    ("dateline-multi-line", set_(["body", "dateline"], "KYIV,\nUkraine"), ["$.body.dateline"]),
    ("image-credit-empty", set_(["images", 0, "credit"], ""), ["$.images[0].credit"]),
    ("image-negative-width", set_(["images", 0, "width"], -1200), ["$.images[0].width"]),
    ("image-zero-height", set_(["images", 1, "height"], 0), ["$.images[1].height"]),
    ("image-fractional-width", set_(["images", 0, "width"], 1200.5), ["$.images[0].width"]),
    ("image-role-unknown", set_(["images", 0, "role"], "hero"), ["$.images[0].role"]),
    ("image-without-alt", drop(["images", 1, "alt"]), ["$.images[1]"]),
    ("image-mime-type", set_(["images", 0, "mimeType"], "jpeg"), ["$.images[0].mimeType"]),
    ("image-url-relative", set_(["images", 0, "url"], "/uploads/a.jpg"), ["$.images[0].url"]),
    ("date-without-time-zone", set_(["datePublished"], "2026-02-05T07:30:00"), ["$.datePublished"]),
    ("date-in-words", set_(["datePublished"], "yesterday"), ["$.datePublished"]),
    ("date-without-time", set_(["dateModified"], "2026-02-05"), ["$.dateModified"]),
    ("date-impossible", set_(["dateModified"], "2026-02-30T07:30:00Z"), ["$.dateModified"]),
    ("url-not-http", set_(["url"], "ftp://newslooks.com/story"), ["$.url"]),
    ("url-not-a-url", set_(["url"], "newslooks dot com"), ["$.url"]),
    ("url-with-space", set_(["url"], "https://newslooks.com/a story/"), ["$.url"]),
    ("unknown-top-level-key", set_(["author"], "J. Mansour"), ["$.author"]),
    ("extension-key-wrong-case", set_(["X-Source"], "wire"), ['$["X-Source"]']),
    ("unknown-nested-key", set_(["byline", "twitter"], "@jmansour"), ["$.byline.twitter"]),
    ("missing-quick-looks", drop(["quickLooks"]), ["$"]),
    ("missing-id", drop(["id"]), ["$"]),
    ("quick-looks-empty", set_(["quickLooks", "items"], []), ["$.quickLooks.items"]),
    ("quick-look-blank", set_(["quickLooks", "items", 2], ""), ["$.quickLooks.items[2]"]),
    ("quick-looks-without-items", drop(["quickLooks", "items"]), ["$.quickLooks"]),
    ("version-zero", set_(["version"], 0), ["$.version"]),
    ("version-string", set_(["version"], "1"), ["$.version"]),
    ("version-boolean", set_(["version"], True), ["$.version"]),
    ("version-fraction", set_(["version"], 1.5), ["$.version"]),
    ("language-word", set_(["language"], "english"), ["$.language"]),
    ("language-underscore", set_(["language"], "en_US"), ["$.language"]),
    ("status-unknown", set_(["status"], "draft"), ["$.status"]),
    ("status-null", set_(["status"], None), ["$.status"]),
    ("labels-duplicated", set_(["labels"], ["Top Story", "US", "Top Story"]), ["$.labels"]),
    ("tags-duplicated", set_(["tags"], ["Russia", "Russia"]), ["$.tags"]),
    ("section-multi-line", set_(["section"], "US\nWorld"), ["$.section"]),
    ("id-with-space", set_(["id"], "us russia talks"), ["$.id"]),
    ("authors-empty", set_(["byline", "authors"], []), ["$.byline.authors"]),
    ("author-without-name", set_(["byline", "authors", 0], {"url": "https://newslooks.com/author/j/"}), ["$.byline.authors[0]"]),
    ("author-url-mailto", set_(["byline", "authors", 0, "url"], "mailto:j@newslooks.com"), ["$.byline.authors[0].url"]),
    ("byline-without-outlet", drop(["byline", "outlet"]), ["$.byline"]),
    ("related-rel-unknown", set_(["related", 1, "rel"], "prev"), ["$.related[1].rel"]),
    ("related-without-headline", drop(["related", 2, "headline"]), ["$.related[2]"]),
    # Python's $ also matches before a final newline; the schema must not let one through.
    ("headline-trailing-newline", set_(["headline"], "U.S. and Russia Restart Talks\n"), ["$.headline"]),
    ("id-trailing-newline", set_(["id"], "us-russia-talks\n"), ["$.id"]),
    ("language-trailing-newline", set_(["language"], "en-US\n"), ["$.language"]),
    ("url-trailing-newline", set_(["url"], "https://newslooks.com/story/\n"), ["$.url"]),
    ("mime-type-trailing-newline", set_(["images", 0, "mimeType"], "image/jpeg\n"), ["$.images[0].mimeType"]),
    ("correction-date-only", set_(["corrections"], [{"date": "2026-02-06", "text": "Fixed a name."}]), ["$.corrections[0].date"]),
    ("correction-without-text", set_(["corrections"], [{"date": "2026-02-06T10:00:00Z"}]), ["$.corrections[0]"]),
]


def test_the_table_is_large_and_every_case_distinct() -> None:
    assert len(BAD_ARTICLES) >= 25
    assert len({case for case, _, _ in BAD_ARTICLES}) == len(BAD_ARTICLES)


@pytest.mark.parametrize("change, expected", [(c, e) for _, c, e in BAD_ARTICLES], ids=[i for i, _, _ in BAD_ARTICLES])
def test_bad_article_is_rejected_at_its_path(change: Callable[[dict[str, Any]], None], expected: list[str]) -> None:
    doc = seed()
    change(doc)
    assert paths_of(doc) == expected
    found = problems("article", doc)
    assert all(p.message.strip() for p in found)
    # Messages quote the offending value, but never a 20,000-character paragraph in full.
    assert all(len(p.message) < 300 for p in found)
    with pytest.raises(ValidationFailed) as caught:
        validate("article", doc)
    assert caught.value.problems == found


def test_the_seed_itself_is_valid_so_each_case_tests_one_change() -> None:
    assert problems("article", seed()) == []


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_validates(path: Path) -> None:
    assert problems("article", load(path)) == []


def test_several_problems_are_all_reported_sorted_by_path() -> None:
    doc = seed()
    doc["zzz"] = 1
    doc["version"] = "2"
    doc["headline"] = "two\nlines"
    doc["body"]["blocks"][10]["text"] = " "
    doc["body"]["blocks"][2]["text"] = ""
    doc["images"][1]["credit"] = ""
    del doc["quickLooks"]
    # Array indexes sort numerically: blocks[2] before blocks[10].
    assert paths_of(doc) == [
        "$",
        "$.body.blocks[2].text",
        "$.body.blocks[10].text",
        "$.headline",
        "$.images[1].credit",
        "$.version",
        "$.zzz",
    ]
    found = problems("article", doc)
    assert found == sorted(set(found), key=found.index)  # no duplicates
    assert any("quickLooks" in p.message for p in found if p.path == "$")


def test_messages_say_what_to_fix() -> None:
    doc = seed()
    doc["datePublished"] = "2026-02-05T07:30:00"
    doc["url"] = "ftp://newslooks.com/x"
    doc["language"] = "en_US"
    doc["version"] = "1"
    doc["body"]["blocks"][9].pop("speaker")
    by_path: dict[str, list[str]] = {}
    for p in problems("article", doc):
        by_path.setdefault(p.path, []).append(p.message)
    assert any("time zone" in m for m in by_path["$.datePublished"])
    assert any("http" in m for m in by_path["$.url"])
    assert any("language tag" in m for m in by_path["$.language"])
    assert by_path["$.version"] == ["must be an integer, not a string"]
    assert any("speaker" in m for m in by_path["$.body.blocks[9]"])


def test_plain_text_may_contain_angle_brackets() -> None:
    # Text is plain text that renderers escape; "<" is content, not markup to reject.
    doc = seed()
    doc["headline"] = "Oxygen <92% & rising: what <b> means"
    doc["body"]["blocks"][0]["text"] = "<script>alert(1)</script> is just text here"
    doc["quickLooks"]["items"][0] = "Fewer than <5% of ballots contested"
    assert problems("article", doc) == []


def test_unicode_and_rtl_text_are_valid() -> None:
    doc = seed()
    doc["language"] = "he"
    doc["headline"] = "ארה״ב ורוסיה מחדשות את השיחות הצבאיות"
    doc["byline"]["authors"] = [{"name": "יעל כהן"}, {"name": "Иван Петров"}, {"name": "王小明"}]
    assert problems("article", doc) == []


def test_optional_parts_may_be_left_out() -> None:
    doc = seed()
    for key in ("labels", "tags", "images", "related", "corrections"):
        doc.pop(key, None)
    del doc["byline"]["datelineCity"], doc["byline"]["edition"], doc["quickLooks"]["title"]
    del doc["body"]["title"], doc["body"]["dateline"]
    assert problems("article", doc) == []


def test_retracted_status_and_corrections_are_valid() -> None:
    doc = seed()
    doc["status"] = "retracted"
    doc["corrections"] = [{"date": "2026-02-06T10:00:00+01:00", "text": "This story was retracted.\nSee the editor's note."}]
    assert problems("article", doc) == []


# --- the schema document itself -------------------------------------------------------------


def _object_schemas(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = {"(top level)": schema}
    found.update({name: sub for name, sub in schema["$defs"].items() if sub.get("type") == "object"})
    return found


def test_schema_is_valid_draft_2020_12_with_id_and_defs() -> None:
    schema = load_schema("article")
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    assert schema["$id"].startswith("https://")
    assert schema["$defs"]
    assert schema["unevaluatedProperties"] is False


def test_every_object_in_the_schema_is_closed_but_open_to_x_keys() -> None:
    objects = _object_schemas(load_schema("article"))
    assert {"author", "byline", "quickLooks", "block", "body", "image", "relatedLink", "correction"} <= set(objects)
    for name, sub in objects.items():
        assert sub.get("unevaluatedProperties") is False, name
        assert sub.get("patternProperties", {}).get("^x-") is True, name


EXTENSION_PLACES: list[list[Key]] = [
    [],
    ["byline"],
    ["byline", "authors", 0],
    ["quickLooks"],
    ["body"],
    ["body", "blocks", 9],
    ["images", 0],
    ["related", 1],
]


@pytest.mark.parametrize("where", EXTENSION_PLACES, ids=[json_path(w) for w in EXTENSION_PLACES])
def test_x_keys_are_allowed_at_top_level_and_nested(where: list[Key]) -> None:
    doc = seed()
    target: Any = doc
    for part in where:
        target = target[part]
    target["x-newslooks-id"] = {"any": ["json", 1, None]}
    target["x-"] = 0
    assert problems("article", doc) == []
    target["y-newslooks-id"] = 1
    assert paths_of(doc) == [json_path([*where, "y-newslooks-id"])]


def test_corrections_items_accept_x_keys() -> None:
    doc = seed()
    doc["corrections"] = [{"date": "2026-02-06T10:00:00Z", "text": "Fixed.", "x-editor": "desk"}]
    assert problems("article", doc) == []


# --- the example collection covers what the issue asks for ---------------------------------


def test_examples_cover_the_required_variety() -> None:
    docs = [load(p) for p in EXAMPLES]
    seed_doc = seed()
    others = [d for d in docs if d["id"] != seed_doc["id"]]
    assert len(others) >= 5
    assert len({d["id"] for d in docs}) == len(docs), "example ids must be unique"
    assert len({d["url"] for d in docs}) == len(docs), "example URLs must be unique"
    assert len({d["datePublished"] for d in docs}) == len(docs)
    assert {d["section"] for d in others} - {seed_doc["section"]}, "examples must use other sections"
    assert len({d["section"] for d in others}) >= 5
    assert all(d["version"] == 1 for d in docs)
    assert all(d["url"].startswith("https://") for d in docs)
    assert all(3 <= len(d["quickLooks"]["items"]) <= 8 for d in others)
    assert any(not d.get("images") for d in docs), "one story without an image"
    assert any(len(d["byline"]["authors"]) >= 2 for d in docs), "one story with several authors"
    assert any(d.get("corrections") for d in docs), "one story with a correction"
    assert any(d["language"].split("-")[0] in ("ar", "he", "fa", "ur") for d in docs), "one right-to-left story"

    def script_of(doc: dict[str, Any]) -> set[str]:
        text = doc["headline"] + doc["summary"]
        return {unicodedata.name(ch, "").split(" ")[0] for ch in text if ch.isalpha()}

    scripts = set().union(*(script_of(d) for d in docs))
    assert "ARABIC" in scripts or "HEBREW" in scripts
    assert scripts & {"CYRILLIC", "CJK", "HIRAGANA", "KATAKANA", "HANGUL"}
    long = [d for d in docs if len(d["body"]["blocks"]) >= 30]
    assert long, "one long story"
    kinds = [b["type"] for b in long[0]["body"]["blocks"]]
    assert kinds.count("heading") >= 2 and kinds.count("quote") >= 3


def test_seed_example_carries_the_whole_story() -> None:
    doc = seed()
    assert doc["labels"] == ["Top Story", "US"]
    assert doc["byline"] == {
        "outlet": "Newslooks",
        "datelineCity": "WASHINGTON",
        "authors": [{"name": "J. Mansour"}],
        "edition": "Morning Edition",
    }
    assert doc["body"]["dateline"] == "KYIV, Ukraine"
    assert len(doc["quickLooks"]["items"]) == 8
    assert [(i["role"], i["credit"]) for i in doc["images"]] == [
        ("lead", "AP Photo/Sergei Grits"),
        ("inline", "AP Photo/Efrem Lukatsky"),
    ]
    blocks = doc["body"]["blocks"]
    assert sum(b["type"] == "paragraph" for b in blocks) == 13
    quotes = [b for b in blocks if b["type"] == "quote"]
    assert [q["speaker"] for q in quotes] == ["Volodymyr Zelenskyy"]
    assert {r["rel"] for r in doc["related"]} >= {"previous", "next"}


# --- any JSON at all -------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(json_scalars | st.lists(json_values, max_size=5))
def test_a_non_object_is_a_problem_at_the_root(value: Any) -> None:
    found = problems("article", value)
    assert found
    assert "$" in [p.path for p in found]


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_any_object_gets_a_sorted_answer_and_never_raises(value: dict[str, Any]) -> None:
    found = problems("article", value)
    assert found  # an article has required fields, so no random object is one
    assert all(p.path.startswith("$") and p.message for p in found)
    assert len(set(found)) == len(found)


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1).filter(lambda s: s.strip()))
def test_any_non_blank_text_is_a_valid_paragraph(text: str) -> None:
    doc = seed()
    doc["body"]["blocks"][0]["text"] = text
    assert problems("article", doc) == []


def test_json_path_notation() -> None:
    assert json_path([]) == "$"
    assert json_path(["body", "blocks", 3, "text"]) == "$.body.blocks[3].text"
    assert json_path(["x-ext"]) == '$["x-ext"]'
    assert json_path(["a b", 0]) == '$["a b"][0]'



def test_partner_example_validates() -> None:
    example = ROOT / "examples" / "partner.example.json"
    if not (ROOT / "src" / "syndicate" / "schemas" / "partner.schema.json").exists():
        pytest.skip("src/syndicate/schemas/partner.schema.json is not in the tree")
    assert problems("partner", load(example)) == []
