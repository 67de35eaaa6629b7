"""Newsletter link tokens: links already in inboxes keep working, and a reader is told the truth.

Unsubscribe links never expire, so the token format is a promise to every email
already sent: a fixed vector pins it. A forged link must never be treated as a
merely expired one (that page offers a fresh confirmation). Each test fails on
a small break of ``newsletter/tokens.py`` (a mutant) that the rest of the fast
suite lets through.
"""

from __future__ import annotations

import secrets
import string

import pytest

from syndicate.errors import ConfigError
from syndicate.newsletter import tokens

KEY = "test-secret-key-0123456789"
MALFORMED = "the link is malformed; copy the whole link from the email"
NOT_VALID = "the link is not valid; copy the whole link from the email"
EXPIRED = "the link has expired; subscribe again to get a fresh one"


def test_tokens_issued_by_earlier_releases_still_verify():
    # Issued by this format; a change of encoding, separator or MAC breaks every link in every inbox.
    unsubscribe = "bW9ybmluZx9hMWIyYzNkNGU1ZjY.EHqoS9l8I4fvaxBk0ndh9g"
    confirm = "bW9ybmluZx9hMWIyYzNkNGU1ZjYfMTgwMDAwMDAwMA.fvBmZ-PyvqDXE66UYryxBQ"
    assert tokens.verify(KEY, tokens.UNSUBSCRIBE, unsubscribe) == tokens.TokenData("morning", "a1b2c3d4e5f6", None)
    assert tokens.verify(KEY, tokens.CONFIRM, confirm, now=1_700_000_000) == tokens.TokenData(
        "morning", "a1b2c3d4e5f6", 1_800_000_000)
    assert tokens.sign(KEY, tokens.UNSUBSCRIBE, "morning", "a1b2c3d4e5f6") == unsubscribe


def test_payload_ending_in_x_round_trips():
    # token_urlsafe ids can end in "W", which base64-encodes to a final "X".
    token = tokens.sign(KEY, tokens.UNSUBSCRIBE, "evenings", "Zm9vYmFyYmFW")
    assert token.split(".")[0].endswith("X")
    assert tokens.verify(KEY, tokens.UNSUBSCRIBE, token).subscriber_id == "Zm9vYmFyYmFW"


@pytest.mark.parametrize("length", range(1, 64))
def test_tokens_of_every_length_round_trip(length):
    # Each payload length leaves a different base64 remainder to pad back.
    list_id = ("m" + string.ascii_lowercase * 3)[:length]
    sid = secrets.token_urlsafe(9)
    for expires in (None, 1_800_000_000):
        token = tokens.sign(KEY, tokens.CONFIRM, list_id, sid, expires)
        assert tokens.verify(KEY, tokens.CONFIRM, token, now=0) == tokens.TokenData(list_id, sid, expires)


def test_a_forged_or_broken_link_is_not_called_expired():
    good = tokens.sign(KEY, tokens.CONFIRM, "morning", "sid", expires=2_000_000_000)
    forged = good[:-2] + ("A" if good[-2] != "A" else "B") + good[-1]  # always another MAC
    for bad, message in ((forged, NOT_VALID), ("Zm9v", NOT_VALID), ("Zm9v.YmFy", NOT_VALID),
                         ("Zm9v.Y", MALFORMED)):
        with pytest.raises(tokens.TokenError) as caught:
            tokens.verify(KEY, tokens.CONFIRM, bad, now=0)
        assert caught.value.expired is False
        assert str(caught.value) == message


@pytest.mark.parametrize("n", range(20))
def test_only_the_one_spelling_a_token_was_issued_with_verifies(n):
    # base64 leaves the last character's low bits unused: other characters there decode to the same
    # bytes. A link altered that way is not the link that was sent, and must not confirm anyone.
    token = tokens.sign(KEY, tokens.CONFIRM, f"list{n}", secrets.token_urlsafe(9), expires=2_000_000_000)
    body, mac_text = token.split(".")
    alphabet = string.ascii_letters + string.digits + "-_"
    variants = [f"{body}.{mac_text[:-1]}{c}" for c in alphabet if c != mac_text[-1]]
    variants += [f"{body[:-1]}{c}.{mac_text}" for c in alphabet if c != body[-1]]
    same_bytes = [v for v in variants if tokens._unb64(v.split(".")[0]) == tokens._unb64(body)
                  and tokens._unb64(v.split(".")[1]) == tokens._unb64(mac_text)]
    assert same_bytes  # the spellings the decoder alone cannot tell apart (16 for a 16-byte MAC)
    for variant in variants:
        with pytest.raises(tokens.TokenError) as caught:
            tokens.verify(KEY, tokens.CONFIRM, variant, now=0)
        assert caught.value.expired is False
    assert tokens.verify(KEY, tokens.CONFIRM, token, now=0).list_id == f"list{n}"


def test_a_token_with_the_wrong_field_count_is_not_valid():
    # Correctly signed, but not a token this module issues (one field only).
    token = tokens._b64(b"morning") + "." + tokens._b64(tokens._mac(KEY, tokens.CONFIRM, b"morning"))
    with pytest.raises(tokens.TokenError) as caught:
        tokens.verify(KEY, tokens.CONFIRM, token)
    assert str(caught.value) == NOT_VALID and caught.value.expired is False


def test_expired_link_says_so():
    token = tokens.sign(KEY, tokens.CONFIRM, "morning", "sid", expires=1000)
    with pytest.raises(tokens.TokenError) as caught:
        tokens.verify(KEY, tokens.CONFIRM, token, now=1001)
    assert caught.value.expired is True and str(caught.value) == EXPIRED


def test_link_is_valid_through_its_expiry_second():
    token = tokens.sign(KEY, tokens.CONFIRM, "morning", "sid", expires=1000)
    assert tokens.verify(KEY, tokens.CONFIRM, token, now=1000).expires == 1000


def test_a_fresh_link_verifies_against_the_real_clock():
    token = tokens.sign(KEY, tokens.CONFIRM, "morning", "sid", expires=4_000_000_000)
    assert tokens.verify(KEY, tokens.CONFIRM, token).list_id == "morning"
    stale = tokens.sign(KEY, tokens.CONFIRM, "morning", "sid", expires=1_000_000_000)
    with pytest.raises(tokens.TokenError) as caught:
        tokens.verify(KEY, tokens.CONFIRM, stale)
    assert caught.value.expired


@pytest.mark.parametrize("secret", [None, ""])
def test_without_a_secret_key_the_operator_is_told_which_variable(secret):
    with pytest.raises(ConfigError) as caught:
        tokens.sign(secret, tokens.UNSUBSCRIBE, "morning", "sid")
    assert caught.value.message == "SYNDICATE_SECRET_KEY is not set; newsletter links are signed with it"
