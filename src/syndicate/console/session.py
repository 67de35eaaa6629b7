"""Console sign-in sessions and CSRF tokens, kept in Redis.

The cookie holds ``{session id}.{expiry}.{MAC}``: the MAC (HMAC-SHA256 with the
project's secret key) makes a forged or altered cookie worthless without a
round trip, the expiry bounds a stolen cookie's life even if Redis kept the
record, and the record in Redis (with the same TTL) is what sign-out deletes,
so a signed-out cookie never works again. The standard library's ``hmac`` is
used rather than a signing package because the format is three fields and the
project already signs its newsletter links the same way.

Keys (under the deployment prefix):
    console:session:{sid}   hash   csrf, created_at; expires with the session
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from ..config import get_settings
from ..store import get_redis, key

COOKIE = "syndicate_console"
LOGIN_COOKIE = "syndicate_console_login"
LIFETIME_SECONDS = 8 * 3600


def _mac(payload: str) -> str:
    secret = get_settings().secret_key
    if not secret:
        # No key, no sessions: the console refuses every sign-in rather than sign with nothing.
        raise PermissionError("SYNDICATE_SECRET_KEY is not set; the console signs its sessions with it")
    return hmac.new(secret.encode(), b"console-session|" + payload.encode(), hashlib.sha256).hexdigest()


def token_is_admin(token: str) -> bool:
    """True only for the admin token; the ingest token (or anything else) never signs in."""
    expected = get_settings().admin_token
    return bool(expected) and hmac.compare_digest(token.strip().encode(), expected.encode())


def create() -> str:
    """A new session; returns the cookie value."""
    sid = secrets.token_urlsafe(24)
    expires = int(time.time()) + LIFETIME_SECONDS
    client = get_redis()
    with client.pipeline(transaction=True) as pipe:
        pipe.hset(key("console", "session", sid), mapping={"csrf": secrets.token_urlsafe(32),
                                                           "created_at": time.time()})
        pipe.expire(key("console", "session", sid), LIFETIME_SECONDS)
        pipe.execute()
    payload = f"{sid}.{expires}"
    return f"{payload}.{_mac(payload)}"


def lookup(cookie: str | None) -> dict | None:
    """The session record ({"sid", "csrf"}) of a valid, live cookie, else None."""
    if not cookie or cookie.count(".") != 2:
        return None
    sid, expires, mac = cookie.split(".")
    try:
        good = hmac.compare_digest(mac.encode(), _mac(f"{sid}.{expires}").encode())
    except PermissionError:
        return None
    if not good or not expires.isdigit() or int(expires) < time.time():
        return None
    csrf = get_redis().hget(key("console", "session", sid), "csrf")
    return {"sid": sid, "csrf": csrf} if csrf else None


def destroy(sid: str) -> None:
    get_redis().delete(key("console", "session", sid))


def csrf_ok(session: dict, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(submitted.encode(), session["csrf"].encode())


def cookie_secure() -> bool:
    return get_settings().public_url.lower().startswith("https://")
