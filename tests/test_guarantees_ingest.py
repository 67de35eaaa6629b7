"""Ingest decisions that survive an upgrade: the stored content digest and number normalisation.

A re-sent article is a duplicate only if its digest equals the one stored when
it was first accepted, possibly by an earlier release; a fixed vector pins the
canonical form. Each test fails on a small break of ``ingest.py`` (a mutant)
that the rest of the fast suite lets through.
"""

from __future__ import annotations

import pytest

from syndicate.ingest import RETRACTED, Stored, canonical_json, decide, digest, normalize

DOCUMENT = {"id": "kyiv-1", "headline": "Kyiv — “talks” ü", "version": 2, "tags": ["a", "b"], "n": None, "ok": True}


def test_canonical_form_and_digest_are_stable_across_releases():
    assert canonical_json(DOCUMENT) == (
        '{"headline":"Kyiv — “talks” ü","id":"kyiv-1","n":null,"ok":true,"tags":["a","b"],"version":2}'
    )
    assert digest(DOCUMENT) == "c446eee9d322a5b4d2e3ee0b33925cc1c7c58c01c76ae04a86e0af3776d6c0e3"


def test_resent_article_with_integral_floats_is_still_a_duplicate():
    stored = Stored(2, digest(normalize(DOCUMENT)), "evt_1", "published")
    resent = normalize({**DOCUMENT, "version": 2.0})
    assert decide(stored, resent["version"], digest(resent), "published").outcome == "duplicate"


def test_normalize_turns_integral_floats_into_ints_everywhere():
    document = {"version": 2.0, "nested": {"width": 1200.0, "ratio": 1.5}, "list": [3.0, 0.25, "4.0", True, None]}
    assert normalize(document) == {"version": 2, "nested": {"width": 1200, "ratio": 1.5},
                                   "list": [3, 0.25, "4.0", True, None]}
    assert type(normalize(document)["version"]) is int
    assert type(normalize(document)["nested"]["width"]) is int
    assert type(normalize([3.0])[0]) is int


@pytest.mark.parametrize("value,expected", [
    (2.0 ** 53, 2 ** 53),
    (-(2.0 ** 53), -(2 ** 53)),
    (1000.0, 1000),
])
def test_integral_floats_up_to_2_53_become_ints(value, expected):
    assert type(normalize(value)) is int and normalize(value) == expected


@pytest.mark.parametrize("value", [2.0 ** 54, 2.0 ** 60, 1e300, 1.5, -0.5])
def test_floats_that_name_no_single_integer_stay_floats(value):
    # Past 2**53 a float no longer names one integer; converting would invent digits.
    assert type(normalize(value)) is float and normalize(value) == value


def test_new_and_retracting_articles_are_events():
    assert decide(None, 1, "d", "published").outcome == "event"
    assert decide(None, 1, "d", "retracted").outcome == "event"
    decision = decide(Stored(1, "d1", "evt_1", "published"), 2, "d2", "retracted")
    assert (decision.outcome, decision.event_type) == ("event", RETRACTED)
