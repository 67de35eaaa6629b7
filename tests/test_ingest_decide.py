"""The pure decision of what an incoming article means."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from syndicate.ingest import PUBLISHED, RETRACTED, UPDATED, Stored, decide, digest

STORED = Stored(version=3, digest="d3", event_id="evt_1", status="published")


def test_new_id_is_published():
    assert decide(None, 1, "d", "published").event_type == PUBLISHED


def test_new_id_already_retracted_is_a_retraction():
    assert decide(None, 1, "d", "retracted").event_type == RETRACTED


def test_higher_version_is_an_update():
    assert decide(STORED, 4, "d4", "published").event_type == UPDATED


def test_higher_version_with_retracted_status_is_a_retraction():
    assert decide(STORED, 4, "d4", "retracted").event_type == RETRACTED


def test_same_version_same_content_is_a_duplicate():
    assert decide(STORED, 3, "d3", "published").outcome == "duplicate"


def test_same_version_other_content_is_a_conflict_that_says_what_to_do():
    decision = decide(STORED, 3, "other", "published")
    assert decision.outcome == "conflict"
    assert "raise the version to 4" in (decision.reason or "")


def test_lower_version_is_stale():
    decision = decide(STORED, 2, "d2", "published")
    assert decision.outcome == "stale"
    assert "above 3" in (decision.reason or "")


def test_digest_ignores_key_order():
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    assert digest({"a": 1}) != digest({"a": 2})


@given(stored=st.integers(1, 1000), incoming=st.integers(1, 1000))
def test_every_version_pair_has_exactly_one_meaning(stored, incoming):
    decision = decide(Stored(stored, "x", "evt", "published"), incoming, "y", "published")
    expected = "stale" if incoming < stored else "conflict" if incoming == stored else "event"
    assert decision.outcome == expected
