"""Opaque, signed tokens for confirmation and unsubscribe links (pure).

A token is ``base64url(payload) "." base64url(HMAC-SHA256(key, purpose|payload)[:16])``.
The payload names a list and a subscriber's random id (never the address, so a
link that leaks into a log reveals nothing), plus an expiry for confirmation
links. The purpose is part of the MAC, so a confirmation token can never be
replayed as an unsubscribe token or the other way round. Unsubscribe tokens do
not expire: a reader must be able to leave from an email of last year.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import time

from ..errors import ConfigError

CONFIRM = "confirm"
UNSUBSCRIBE = "unsub"
_SEP = "\x1f"
_MAC_BYTES = 16


class TokenError(ValueError):
    """The token is malformed, forged or expired; ``expired`` tells the last apart."""

    def __init__(self, message: str, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


@dataclasses.dataclass(frozen=True)
class TokenData:
    list_id: str
    subscriber_id: str
    expires: int | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key(secret: str | None) -> bytes:
    if not secret:
        raise ConfigError("SYNDICATE_SECRET_KEY is not set; newsletter links are signed with it")
    return secret.encode("utf-8")


def _mac(secret: str | None, purpose: str, payload: bytes) -> bytes:
    return hmac.new(_key(secret), purpose.encode() + b"|" + payload, hashlib.sha256).digest()[:_MAC_BYTES]


def sign(secret: str | None, purpose: str, list_id: str, subscriber_id: str, expires: int | None = None) -> str:
    fields = [list_id, subscriber_id] + ([str(expires)] if expires is not None else [])
    payload = _SEP.join(fields).encode("utf-8")
    return f"{_b64(payload)}.{_b64(_mac(secret, purpose, payload))}"


def verify(secret: str | None, purpose: str, token: str, now: float | None = None) -> TokenData:
    """The token's data; raise TokenError if it is not ours, was altered, or has expired."""
    body, dot, mac_text = token.partition(".")
    try:
        payload, _ = _unb64(body), _unb64(mac_text)
    except (ValueError, TypeError):
        raise TokenError("the link is malformed; copy the whole link from the email") from None
    # The texts are compared, not what they decode to: base64 leaves the last character's low bits
    # unused, so other spellings of the same bytes would pass a comparison of the decoded MAC.
    # One token, one spelling.
    expected = _b64(_mac(secret, purpose, payload))
    if not dot or _b64(payload) != body or not hmac.compare_digest(mac_text.encode("utf-8", "replace"),
                                                                    expected.encode("ascii")):
        raise TokenError("the link is not valid; copy the whole link from the email")
    fields = payload.decode("utf-8", "replace").split(_SEP)
    if len(fields) not in (2, 3):
        raise TokenError("the link is not valid; copy the whole link from the email")
    expires = int(fields[2]) if len(fields) == 3 else None
    if expires is not None and (now if now is not None else time.time()) > expires:
        raise TokenError("the link has expired; subscribe again to get a fresh one", expired=True)
    return TokenData(fields[0], fields[1], expires)
