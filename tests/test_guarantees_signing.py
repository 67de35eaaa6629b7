"""Standard Webhooks signing at its edges: the spec's own vector, secret sizes, malformed secrets.

Partners verify with whatever Standard Webhooks library they use, so the exact
bytes matter; each test here fails on a small break of ``webhooks/signing.py``
(a mutant) that the rest of the fast suite lets through.
"""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks import Webhook

from syndicate.webhooks import signing

# The example in the Standard Webhooks reference libraries' test suites.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def _secret_of(size: int) -> str:
    return signing.PREFIX + base64.b64encode(bytes(range(size))).decode("ascii")


def test_signature_matches_the_standard_webhooks_reference_vector():
    assert signing.signature(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    assert signing.headers([SPEC_SECRET], SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
    }


@pytest.mark.parametrize("size", [signing.MIN_BYTES, signing.SECRET_BYTES, signing.MAX_BYTES])
def test_new_secret_of_every_allowed_size_has_that_many_bytes_and_verifies(size):
    secret = signing.new_secret(size)
    assert len(signing.secret_bytes(secret)) == size
    body = b'{"ok":true}'
    assert Webhook(secret).verify(body, signing.headers([secret], "msg_1", int(time.time()), body)) == {"ok": True}


@pytest.mark.parametrize("size", [signing.MIN_BYTES - 1, signing.MAX_BYTES + 1])
def test_new_secret_refuses_sizes_outside_the_spec(size):
    with pytest.raises(ValueError) as caught:
        signing.new_secret(size)
    assert str(caught.value) == f"a webhook secret has 24 to 64 bytes, not {size}"


@pytest.mark.parametrize("size", [signing.MIN_BYTES, signing.MAX_BYTES])
def test_secrets_at_the_size_limits_sign(size):
    assert signing.secret_bytes(_secret_of(size)) == bytes(range(size))
    assert signing.signature(_secret_of(size), "m", 1, b"{}").startswith("v1,")


@pytest.mark.parametrize("size", [signing.MIN_BYTES - 1, signing.MAX_BYTES + 1])
def test_secrets_outside_the_size_limits_are_refused(size):
    with pytest.raises(ValueError) as caught:
        signing.secret_bytes(_secret_of(size))
    assert str(caught.value) == "a webhook secret decodes to 24-64 bytes"


@pytest.mark.parametrize("secret,says", [
    ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "a webhook secret starts with whsec_"),
    # Characters outside base64 would otherwise be skipped, signing with a key nobody holds.
    ("whsec_MfKQ9r8GKYqrTwjUPD8I!LPZIo2LaLaSw", "a webhook secret is whsec_ followed by base64"),
    ("whsec_MfKQ9r8GKYqrTwjUPD8I LPZIo2LaLaSw", "a webhook secret is whsec_ followed by base64"),
])
def test_malformed_secrets_are_refused_with_the_expected_form(secret, says):
    with pytest.raises(ValueError) as caught:
        signing.secret_bytes(secret)
    assert str(caught.value) == says


def test_signing_without_a_live_secret_says_to_rotate():
    with pytest.raises(ValueError) as caught:
        signing.headers([], "msg_1", 1, b"{}")
    assert str(caught.value) == "no live secret to sign with; rotate the partner's secret"
