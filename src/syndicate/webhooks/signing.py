"""Standard Webhooks v1 secrets and signatures (pure).

A secret is ``whsec_`` + base64 of random bytes (the format the
``standardwebhooks`` package reads). The signature is HMAC-SHA256 over
``"{webhook-id}.{webhook-timestamp}.{body}"`` with the exact body bytes sent,
written ``v1,<base64>``. During a rotation every live secret signs, and the
header carries the signatures space-separated, so a partner verifying with
either the old or the new secret succeeds.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _secrets
from collections.abc import Iterable

PREFIX = "whsec_"
SECRET_BYTES = 32  # the spec allows 24 to 64
MIN_BYTES, MAX_BYTES = 24, 64


def new_secret(size: int = SECRET_BYTES) -> str:
    if not MIN_BYTES <= size <= MAX_BYTES:
        raise ValueError(f"a webhook secret has {MIN_BYTES} to {MAX_BYTES} bytes, not {size}")
    return PREFIX + base64.b64encode(_secrets.token_bytes(size)).decode("ascii")


def secret_bytes(secret: str) -> bytes:
    """The raw key of a ``whsec_`` secret; ValueError for anything else."""
    if not secret.startswith(PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    try:
        raw = base64.b64decode(secret[len(PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ followed by base64") from None
    if not MIN_BYTES <= len(raw) <= MAX_BYTES:
        raise ValueError(f"a webhook secret decodes to {MIN_BYTES}-{MAX_BYTES} bytes")
    return raw


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature."""
    signed = msg_id.encode("utf-8") + b"." + str(int(timestamp)).encode("ascii") + b"." + body
    mac = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def sign(secrets: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: one signature per live secret, newest first."""
    values = [signature(s, msg_id, timestamp, body) for s in secrets]
    if not values:
        raise ValueError("no live secret to sign with; rotate the partner's secret")
    return " ".join(values)


def headers(secrets: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": sign(secrets, msg_id, timestamp, body),
    }
