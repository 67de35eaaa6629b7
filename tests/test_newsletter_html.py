"""The edition email as a mail client meets it: the example stories rendered, then parsed as HTML.

What is checked is what survives clients that drop <style> (Gmail app, Outlook): the 600 px
layout and every colour inline, alt text on every image, a visible unsubscribe link, the
preheader, dark-mode hints, each story's own language and direction, and a text part that
carries every story and every bullet.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from syndicate.newsletter import listconfig, render
from syndicate.newsletter.edition import UNSUBSCRIBE_PLACEHOLDER, Edition, select

ROOT = Path(__file__).resolve().parents[1]
UTC = dt.timezone.utc


class Tree(HTMLParser):
    """Every element with its attributes and its ancestors' (tag, attrs); text with its ancestors."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, dict[str, str]]] = []
        self.elements: list[tuple[str, dict[str, str], list[tuple[str, dict[str, str]]]]] = []
        self.texts: list[tuple[str, list[tuple[str, dict[str, str]]]]] = []
        self.styles: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        self.elements.append((tag, attrs, list(self.stack)))
        if tag not in self.VOID:
            self.stack.append((tag, attrs))

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data):
        if self.stack and self.stack[-1][0] == "style":
            self.styles.append(data)
        elif data.strip():
            self.texts.append((data, list(self.stack)))

    def find(self, tag=None, cls=None):
        return [(t, a, s) for t, a, s in self.elements
                if (tag is None or t == tag) and (cls is None or cls in a.get("class", "").split())]


def _hidden(ancestors) -> bool:
    return any("display: none" in a.get("style", "") or "display:none" in a.get("style", "") for _, a in ancestors)


@pytest.fixture(scope="module")
def articles():
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted((ROOT / "examples" / "articles").glob("*.json"))]


@pytest.fixture(scope="module")
def rendered(articles):
    config = listconfig.with_defaults({"id": "morning", "name": "Morning Edition", "schedule": "0 7 * * *",
                                       "timezone": "America/New_York",
                                       "fromAddress": "Newslooks <news@newslooks.example>"})
    stories = select(config, articles, set())
    assert len(stories) == len(articles)  # every example is a live story: all of them in this edition
    edition = Edition("morning.test", config, stories, dt.datetime(2026, 11, 25, 12, tzinfo=UTC),
                      "https://newslooks.example")
    out = render.render(edition)
    tree = Tree()
    tree.feed(out.html)
    return edition, out, tree


def test_the_layout_is_a_600px_table_styled_inline(rendered):
    _, out, tree = rendered
    assert out.full_stories == 7 and out.linked_only == 0
    ((_, container, ancestors),) = tree.find("table", "container")
    assert container["width"] == "600" and "max-width: 600px" in container["style"]
    assert container.get("role") == "presentation" and ancestors[-1][0] == "td"  # centred in the wrapper cell
    assert '<!--[if mso]><table role="presentation" width="600"' in out.html  # Outlook's fixed width
    # Every styled element carries its style inline: nothing of the layout hangs on <style>.
    for cls in ("wrapper", "masthead", "story", "headline", "lead", "caption", "bullets", "footer", "preheader"):
        found = tree.find(cls=cls)
        assert found, cls
        assert all(a.get("style") for _, a, _ in found), cls
    for _, a, _ in tree.find("img"):
        assert "max-width: 552px" in a["style"] and "height: auto" in a["style"] and a["width"] == "552"


def test_the_only_style_left_is_what_cannot_be_inlined(rendered):
    _, _, tree = rendered
    css = re.sub(r"/\*.*?\*/", "", "".join(tree.styles), flags=re.S)
    outside_media = re.sub(r"@media[^{]*\{(?:[^{}]*\{[^{}]*\})*[^{}]*\}", "", css)
    selectors = [s.strip() for rule in re.findall(r"([^{}]+)\{[^{}]*\}", outside_media) for s in rule.split(",")]
    assert selectors and all(s.startswith(("[data-ogsc]", "[data-ogsb]")) for s in selectors), selectors
    assert "@media (prefers-color-scheme: dark)" in css and "@media only screen and (max-width: 620px)" in css


def test_dark_mode_hints(rendered):
    _, _, tree = rendered
    metas = {a.get("name"): a.get("content") for _, a, _ in tree.find("meta") if a.get("name")}
    assert metas["color-scheme"] == "light dark" and metas["supported-color-schemes"] == "light dark"


def test_every_image_has_alt_text_and_links_to_its_story(rendered, articles):
    edition, _, tree = rendered
    images = tree.find("img")
    assert len(images) == sum(1 for s in edition.stories if s["image"])
    for _, a, ancestors in images:
        assert a["alt"].strip()
        assert ancestors[-1][0] == "a" and ancestors[-1][1]["href"].startswith("https://")
    leads = {i["alt"] for art in articles for i in art.get("images", []) if i.get("role") == "lead"}
    assert {a["alt"] for _, a, _ in images} <= leads


def test_a_visible_unsubscribe_link_and_a_hidden_preheader(rendered):
    edition, _, tree = rendered
    links = [(a, anc) for _, a, anc in tree.find("a") if a.get("href") == UNSUBSCRIBE_PLACEHOLDER]
    assert len(links) == 1 and not _hidden(links[0][1])
    texts = [t for t, anc in tree.texts if anc and anc[-1][1].get("href") == UNSUBSCRIBE_PLACEHOLDER]
    assert texts == ["Unsubscribe"]
    body_first = next(e for e in tree.elements if e[2] and e[2][-1][0] == "body")
    assert body_first[1].get("class") == "preheader" and "display: none" in body_first[1]["style"]
    preheader = "".join(t for t, anc in tree.texts if any(a.get("class") == "preheader" for _, a in anc))
    assert preheader.startswith(edition.preheader()) and edition.preheader()


def test_each_story_keeps_its_language_and_direction(rendered, articles):
    _, _, tree = rendered
    cells = {a["lang"]: a for _, a, _ in tree.find("td", "story")}
    assert set(cells) == {art["language"] for art in articles}
    arabic = next(lang for lang in cells if lang.startswith("ar"))
    assert cells[arabic].get("dir") == "rtl" and "text-align: right" in cells[arabic]["style"]
    assert all("dir" not in a for lang, a in cells.items() if lang != arabic)


def test_the_text_part_has_every_story_and_every_bullet(rendered, articles):
    _, out, _ = rendered
    for art in articles:
        assert art["headline"] in out.text and art["url"] in out.text
        for item in art["quickLooks"]["items"]:
            assert f"  * {item}" in out.text, item
    assert UNSUBSCRIBE_PLACEHOLDER in out.text
    assert "<" not in out.text.replace("<" + UNSUBSCRIBE_PLACEHOLDER, "")


def test_every_bullet_is_in_the_html_too(rendered, articles):
    _, _, tree = rendered
    items = [t for t, anc in tree.texts if anc and anc[-1][0] == "li"]
    assert items == [i for s in rendered[0].stories for i in s["bullets"]]
