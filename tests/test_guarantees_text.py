"""Feed text hygiene at its edges: HTML escaping by context, and section slugs that stay stable.

A section's slug is part of its feed URL, which readers have subscribed to, so
it must not change between releases or collide. Each test fails on a small
break of ``feeds/text.py`` (a mutant) that the rest of the fast suite lets
through.
"""

from __future__ import annotations

import re

from syndicate.feeds.text import SLUG_MAX, html_text, slugify


def test_html_text_escapes_markup_and_leaves_quotes_in_text_content():
    assert html_text('She said "no" & <b>left</b>') == 'She said "no" &amp; &lt;b&gt;left&lt;/b&gt;'


def test_html_text_for_attributes_escapes_quotes_too():
    assert html_text('x" onerror="alert(1)', quote=True) == "x&quot; onerror=&quot;alert(1)"
    assert html_text("it's", quote=True) == "it&#x27;s"


def test_html_text_of_nothing_is_empty():
    assert html_text(None) == ""
    assert html_text(None, quote=True) == ""
    assert html_text(0) == "0"


def test_slug_of_exactly_the_maximum_length_is_kept_whole():
    assert slugify("y" * SLUG_MAX) == "y" * SLUG_MAX


def test_long_slug_is_cut_to_the_maximum_with_a_hash():
    slug = slugify("x" * (SLUG_MAX + 10))
    assert len(slug) == SLUG_MAX
    assert re.fullmatch(r"x{51}-[0-9a-f]{8}", slug)


def test_long_slug_cut_at_a_hyphen_has_no_double_hyphen():
    slug = slugify("a" * 50 + " b" + "c" * 20)
    assert "--" not in slug
    assert re.fullmatch(r"a{50}-[0-9a-f]{8}", slug)


def test_long_sections_sharing_a_prefix_get_different_slugs():
    assert slugify("z" * 70 + " one") != slugify("z" * 70 + " two")


def test_section_with_a_lone_surrogate_still_gets_a_stable_name():
    # The hash reads the raw text; a stray surrogate must not make the slug fail.
    slug = slugify("日本\ud800")
    assert re.fullmatch(r"section-[0-9a-f]{8}", slug)
    assert slugify("日本\ud800") == slug != slugify("日本")
