"""Newsroom text is inert in every feed format, field by field (issue 8, class 1).

The field list is read from src/syndicate/schemas/article.schema.json, so a text field added to
the schema later is covered without touching this file (the test fails until the
complete article below carries it, or until the feeds carry it somewhere).

For each field a hostile string goes into that field alone; all three formats are
rendered and read as a reader does: RSS and Atom through feedparser, the HTML in
them as a browser parses it, JSON Feed through json. The text the reader shows
must be the input (less the control characters feeds strip), and no element or
attribute may carry a tag or attribute that the same story with harmless text
does not have.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import unicodedata

import feedparser
import pytest
from hypothesis import HealthCheck, assume, given, settings as hsettings, strategies as st
from lxml import etree

from conftest import ROOT, load_seed
from feeds_fixtures import html_view, reader_values, shown

from syndicate.config import get_settings
from syndicate.feeds import clean, feed_spec, render_feed

SCHEMA = json.loads((ROOT / "src" / "syndicate" / "schemas" / "article.schema.json").read_text())
ATOM = "http://www.w3.org/2005/Atom"

# Tags and attributes the content HTML is made of (feeds/content.py writes nothing else). Each is on the
# W3C Feed Validator's lists of acceptable elements and attributes, so none is a SecurityRisk there; any
# other tag in a field the validator reads as HTML would be (and any tag at all in a plain-text field).
CONTENT_TAGS = {"figure", "img", "figcaption", "small", "section", "h2", "h3", "ul", "li", "p", "strong",
                "blockquote", "footer", "time", "a", "div"}
CONTENT_ATTRS = {"src", "alt", "width", "height", "class", "datetime", "rel", "href", "lang", "dir"}

HOSTILE = ('<img src=x onerror=alert(1)><script>alert("x")</script><a href="javascript:alert(1)">a</a>'
           " ]]> &amp; &lt;b&gt; &#60;i&#62; 'sq' \"dq\" \x07\x00\x1b\x7f\x85\x9b"
           " \u2028 \u2029 \u202eRTL\u200f \u200d end")


# --- the text fields, from the schema ------------------------------------------------------------

def _resolve(node: dict) -> tuple[dict, set[str]]:
    """The schema node with its $ref chain merged in, and the names of the $defs it went through."""
    merged, names = dict(node), set()
    while "$ref" in merged:
        name = merged.pop("$ref").rsplit("/", 1)[-1]
        names.add(name)
        merged = {**SCHEMA["$defs"][name], **merged}
    return merged, names


def _text_paths(node: dict, path: tuple) -> list[tuple]:
    merged, names = _resolve(node)
    if merged.get("type") == "object":
        out = []
        for name, child in merged.get("properties", {}).items():
            out += _text_paths(child, path + (name,))
        return out
    if merged.get("type") == "array":
        return _text_paths(merged["items"], path + ("[]",))
    is_text = (merged.get("type") == "string" and "format" not in merged and "enum" not in merged
               and ("pattern" not in merged or names & {"line", "text"}))
    return [path] if is_text else []


TEXT_FIELDS = _text_paths(SCHEMA, ())


def _name(path: tuple) -> str:
    return ".".join(path).replace(".[]", "[]")


def complete_article() -> dict:
    """The seed story with every optional text field filled, so each schema field has a place to go."""
    article = load_seed()
    article["corrections"] = [{"date": "2026-02-06T10:00:00Z", "text": "An earlier version misspelt a name."}]
    article["byline"]["authors"].append({"name": "R. Second", "url": "https://newslooks.example/r-second"})
    return article


def put(article: dict, path: tuple, value: str) -> None:
    """Set ``path`` to ``value``: in every object of an array of objects, in the first slot of an array of strings."""
    node, rest = article, list(path)
    while rest:
        part = rest.pop(0)
        if part == "[]":
            assert isinstance(node, list) and node, f"the complete article has no item at {_name(path)}"
            if not rest:
                node[0] = value
                return
            for element in node:
                put(element, tuple(rest), value)
            return
        if not rest:
            node[part] = value
            return
        assert part in node, f"the complete article has nothing at {_name(path)}: add it to complete_article()"
        node = node[part]


def test_the_field_list_comes_from_the_schema_and_holds_every_kind_of_text():
    names = {_name(p) for p in TEXT_FIELDS}
    # A sample of what must be there: plain lines, multi-line text, nested arrays, optional parts.
    assert {"headline", "summary", "section", "labels[]", "tags[]", "byline.authors[].name", "byline.edition",
            "quickLooks.items[]", "body.blocks[].speaker", "body.blocks[].attribution", "images[].alt",
            "images[].credit", "related[].headline", "corrections[].text", "body.dateline"} <= names
    # Identifiers, URLs, dates and enumerations are not free text.
    assert not names & {"id", "url", "language", "status", "datePublished", "images[].url", "images[].mimeType",
                        "related[].rel", "body.blocks[].type", "corrections[].date"}


# --- reading the documents ------------------------------------------------------------------------

def strip_controls(value: str) -> str:
    """The input as a feed may carry it: XML 1.0 has no place for C0 controls (bar tab and line ends),
    surrogates or U+FFFE/U+FFFF, and feeds drop DEL and C1 too."""
    return "".join(c for c in value if not (
        (unicodedata.category(c) == "Cc" and c not in "\t\n\r") or unicodedata.category(c) == "Cs"
        or c in "\ufffe\uffff"))


def _norm(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _html_context(fmt: str, element, attribute: str | None = None) -> bool:
    """Does a reader take this element text (or attribute) as HTML? RSS: all of it, as readers do.
    Atom: only what says type="html"; type="text", person names and category terms are text (RFC 4287)."""
    if fmt == "rss":
        return True
    local = etree.QName(element).localname
    if attribute is not None:
        return not (local == "category" and attribute in ("term", "label"))
    return element.get("type") != "text" and local != "name"


def _shape(tags: list) -> list:
    """Tag and attribute names: what text must never change (attribute values, such as alt text, may)."""
    return [(tag, tuple(name for name, _ in attrs)) for tag, attrs in tags]


def markup_of(fmt: str, body: bytes) -> list:
    """Every tag (with attributes) a reader would find in the document, checking each one on the way."""
    root = etree.fromstring(body)
    found = []
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        local = etree.QName(element).localname
        is_content = local in ("content", "encoded") and (fmt == "rss" or element.get("type") == "html")
        for name, value in element.attrib.items():
            if name in ("href", "url", "src", "uri"):
                assert value.startswith(("http://", "https://")), f"{local}@{name}={value!r}"
            elif _html_context(fmt, element, name):
                assert html_view(value)[1] == [], f"markup in {local}@{name}: {value!r}"
        if fmt == "atom" and local in ("title", "subtitle", "summary") and element.getparent().tag != f"{{{ATOM}}}author":
            assert element.get("type") in ("text", "html"), f"Atom {local} without a declared type"
        if not element.text or not _html_context(fmt, element):
            continue
        tags = html_view(element.text)[1]
        if not is_content:
            assert tags == [], f"live markup in <{local}>: {element.text!r}"
            continue
        for tag, attrs in tags:
            assert tag in CONTENT_TAGS, f"<{tag}> in the content"
            for name, value in attrs:
                assert name in CONTENT_ATTRS and not name.startswith("on"), f"<{tag} {name}=...> in the content"
                if name in ("href", "src"):
                    assert value.startswith(("http://", "https://")), f"<{tag} {name}={value!r}>"
        found.append((local, _shape(tags)))
    return found


def json_markup(body: bytes) -> list:
    doc = json.loads(body)
    found = []
    for item in doc["items"]:
        tags = html_view(item["content_html"])[1]
        for tag, attrs in tags:
            assert tag in CONTENT_TAGS and all(n in CONTENT_ATTRS for n, _ in attrs), (tag, attrs)
        found.append(_shape(tags))
    return found


def json_strings(node, path: str = "") -> list[tuple[str, str, str]]:
    """(path, value, type) of every string in a JSON Feed document: content_html is HTML, the rest text."""
    if isinstance(node, dict):
        return [x for k, v in node.items() for x in json_strings(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [x for n, v in enumerate(node) for x in json_strings(v, f"{path}[{n}]")]
    if isinstance(node, str):
        return [(path, node, "text/html" if path.endswith("content_html") else "text/plain")]
    return []


def read_all(result) -> dict[str, list[tuple[str, str, str]]]:
    """{format: [(path, value, type)]}: every string a reader gets from each document."""
    out = {}
    for fmt, default in (("rss", "text/html"), ("atom", "text/plain")):
        parsed = feedparser.parse(result.documents[fmt].body)
        assert parsed.bozo == 0, parsed.get("bozo_exception")
        out[fmt] = reader_values(parsed.feed, default, "feed") + reader_values(parsed.entries, default, "entries")
    out["json"] = json_strings(json.loads(result.documents["json"].body))
    return out


def render(articles, feed_id: str = "all", section_name: str | None = None, **changes):
    spec = feed_spec(feed_id, dataclasses.replace(get_settings(), **changes), section_name, version="1.0")
    return render_feed(spec, articles, 50)


@functools.lru_cache(maxsize=8)
def _markup(fmt: str, body: bytes) -> str:
    markup = json_markup(body) if fmt == "json" else markup_of(fmt, body)
    return repr(markup)


def read_inert(result, baseline) -> dict[str, list[tuple[str, str, str]]]:
    """What a reader gets from each format, once no document is found to carry markup the baseline's
    documents (the same story with harmless text) do not."""
    for fmt in ("rss", "atom", "json"):
        assert _markup(fmt, result.documents[fmt].body) == _markup(fmt, baseline.documents[fmt].body), \
            f"{fmt}: the text changed the markup"
    return read_all(result)


def shows(values: dict[str, list[tuple[str, str, str]]], marker: str, expected: str) -> set[str]:
    """Every value carrying ``marker`` shows ``expected`` intact; returns the formats the text reached."""
    reached = set()
    for fmt, found in values.items():
        for path, value, ctype in found:
            if marker not in value:
                continue
            reached.add(fmt)
            texts = [_norm(t) for t in shown(value, ctype)]
            assert any(_norm(expected) in t for t in texts), f"{fmt} {path} ({ctype}) shows {texts!r}"
    return reached


def check_inert(result, baseline, marker: str, expected: str) -> set[str]:
    return shows(read_inert(result, baseline), marker, expected)


@pytest.fixture(scope="module")
def baseline():
    return render([complete_article()])


@pytest.mark.parametrize("path", TEXT_FIELDS, ids=_name)
def test_hostile_text_in_each_field_is_shown_as_text_in_every_format(path, baseline):
    marker = "Mk" + "".join(c for c in _name(path) if c.isalnum())
    value = f"{marker} {HOSTILE} {marker}"
    article = complete_article()
    put(article, path, value)
    reached = check_inert(render([article]), baseline, marker, strip_controls(value))
    assert reached, f"{_name(path)} reaches no feed format at all"


def test_every_schema_text_field_is_carried_by_rss_or_atom_or_says_why_not(baseline):
    # The JSON Feed carries every field; these only have a place there (RSS and Atom have no element for them).
    json_only = {"byline.outlet", "byline.datelineCity", "byline.edition"}
    for path in TEXT_FIELDS:
        marker = "Mk" + "".join(c for c in _name(path) if c.isalnum())
        article = complete_article()
        put(article, path, f"{marker} plain {marker}")
        reached = check_inert(render([article]), baseline, marker, f"{marker} plain {marker}")
        want = {"json"} if _name(path) in json_only else {"rss", "atom", "json"}
        assert want <= reached, f"{_name(path)} reached only {sorted(reached)}"


def test_feed_title_description_and_section_name_from_settings_are_text():
    value = f"MkSet {HOSTILE} MkSet"
    story = complete_article()
    plain = render([story], feed_id="sections/x", section_name="Plain")
    hostile = render([story], feed_id="sections/x", section_name=value, feed_title=value, feed_description=value)
    reached = check_inert(hostile, plain, "MkSet", strip_controls(value))
    assert reached == {"rss", "atom", "json"}


@pytest.mark.parametrize("bad", ["javascript:alert(1)", "JavaScript:alert(1)", " javascript:alert(1)",
                                 "data:text/html,<script>alert(1)</script>", "vbscript:x", "//evil.example/x",
                                 "java\tscript:alert(1)", "\x01javascript:alert(1)"])
def test_urls_that_are_not_http_never_become_links(bad):
    # The schema refuses these; a record that reached the store some other way must still not link.
    article = complete_article()
    article["url"] = bad
    article["images"][0]["url"] = bad
    article["related"][0]["url"] = bad
    article["byline"]["authors"][1]["url"] = bad
    result = render([article], feed_icon=bad, websub_hub=bad)
    for fmt in ("rss", "atom"):
        markup_of(fmt, result.documents[fmt].body)  # asserts every href/src/url is http(s)
        assert b"script:" not in result.documents[fmt].body.lower() and b"data:" not in result.documents[fmt].body
    doc = json.loads(result.documents["json"].body)
    json_markup(result.documents["json"].body)
    item = doc["items"][0]
    assert "icon" not in doc and "hubs" not in doc
    assert item["url"] == "" and item["image"].startswith("https://")
    assert all("url" not in a for a in item["authors"])
    assert all(p["url"].startswith("https://") for p in item["_syndicate"]["photos"])


def test_urls_cannot_break_out_of_their_attribute():
    article = complete_article()
    article["images"][0]["url"] = 'https://cdn.example/a.jpg" onerror="alert(1)'
    article["related"][0]["url"] = "https://x.example/'><script>alert(1)</script>"
    result = render([article])
    for fmt in ("rss", "atom"):
        markup_of(fmt, result.documents[fmt].body)
    for item in json.loads(result.documents["json"].body)["items"]:
        tags = html_view(item["content_html"])[1]
        urls = [v for _tag, attrs in tags for n, v in attrs if n in ("src", "href")]
        assert 'https://cdn.example/a.jpg%22%20onerror=%22alert(1)' in urls
        assert all('"' not in u and "<" not in u and "'" not in u for u in urls)


# --- generated hostile text ------------------------------------------------------------------------

_PIECES = st.sampled_from(["<", ">", "&", '"', "'", "</p>", "<script>", "<img src=x onerror=alert(1)>", "]]>",
                           "&amp;", "&lt;b&gt;", "&#x3C;", "&#0;", "\u2028", "\u2029", "\u202e", "\u200f",
                           "\x00", "\x07", "\x0b", "\x1b", "\x85", "\x9f", "\ufffe", "-->", "<!--", "<![CDATA[",
                           "javascript:", " onmouseover=alert(1) ", "\t"])
# Any code point bar surrogates (JSON and the store hold only valid strings), mixed with the pieces above.
_TEXT = st.lists(st.one_of(_PIECES, st.characters(exclude_categories=("Cs",))), min_size=1, max_size=12).map("".join)
_LINE = _TEXT.map(lambda s: s.replace("\r", " ").replace("\n", " "))

GENERATED = {
    ("headline",): _LINE, ("summary",): _TEXT, ("body", "blocks", "[]", "speaker"): _LINE,
    ("body", "blocks", "[]", "text"): _TEXT, ("images", "[]", "caption"): _TEXT, ("images", "[]", "alt"): _TEXT,
    ("byline", "authors", "[]", "name"): _LINE, ("labels", "[]"): _LINE, ("related", "[]", "headline"): _LINE,
}


def _feedparser_redecodes(value: str) -> bool:
    """feedparser "repairs" any value that is all Latin-1 and also valid UTF-8 as bytes ("Ã©" becomes "é"),
    whatever the feed says. Such text is mojibake to begin with, no escaping can stop a reader's guess, and
    the guess never creates markup; generated text of that shape is left out."""
    try:
        return clean(value).encode("iso-8859-1").decode("utf-8") != clean(value)
    except UnicodeError:
        return False


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.fixed_dictionaries({p: s for p, s in GENERATED.items()}))
def test_generated_hostile_text_in_several_fields_is_shown_as_text(baseline, texts):
    article = complete_article()
    values = {}
    for n, (path, text) in enumerate(texts.items()):
        marker = f"Gq{n}q"
        values[marker] = f"{marker}{text}{marker}"
        assume(not _feedparser_redecodes(values[marker]))
        put(article, path, values[marker])
    read = read_inert(render([article]), baseline)
    for marker, value in values.items():
        assert shows(read, marker, strip_controls(value)), f"{marker} reached no format"
