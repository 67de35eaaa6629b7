"""Sign-in and sign-out of the operator console, with a limit on wrong tokens per client address.

The limit lives in Redis, so it holds across every API process behind a load balancer:

    console:login-failures:{address}   zset   one member per wrong token -> when; trimmed to the window
"""

from __future__ import annotations

import hmac
import math
import secrets
import time

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from ..store import get_redis, key
from . import session
from .web import checked_form, form, page, require_session, secure

router = APIRouter(include_in_schema=False)

# Ten wrong tokens per client address in any five minutes, then 429 until the oldest leaves the
# window. A token of 32 random bytes cannot be guessed at that pace; the limit keeps a script
# from filling the logs and the store with attempts.
FAILURE_LIMIT = 10
FAILURE_WINDOW_SECONDS = 300


def _failures_key(address: str) -> str:
    return key("console", "login-failures", address)


def blocked_for(address: str, now: float | None = None) -> int:
    """Seconds until ``address`` may try a token again; 0 when it may now."""
    now = time.time() if now is None else now
    client, name = get_redis(), _failures_key(address)
    with client.pipeline(transaction=True) as pipe:
        pipe.zremrangebyscore(name, "-inf", now - FAILURE_WINDOW_SECONDS)
        pipe.zcard(name)
        count = pipe.execute()[1]
    if count < FAILURE_LIMIT:
        return 0
    # Trying is allowed again once enough of the oldest failures have left the window.
    oldest = client.zrange(name, count - FAILURE_LIMIT, count - FAILURE_LIMIT, withscores=True)
    if not oldest:
        return 0
    return max(1, math.ceil(oldest[0][1] + FAILURE_WINDOW_SECONDS - now))


def note_failure(address: str, now: float | None = None) -> None:
    now = time.time() if now is None else now
    with get_redis().pipeline(transaction=True) as pipe:
        pipe.zadd(_failures_key(address), {f"{now:.6f}:{secrets.token_hex(4)}": now})
        pipe.expire(_failures_key(address), FAILURE_WINDOW_SECONDS)
        pipe.execute()


def _address(request: Request) -> str:
    # The peer as the server sees it (behind a trusted proxy, uvicorn puts X-Forwarded-For's client here).
    return request.client.host if request.client else "unknown"


def _too_many(retry_after: int) -> Response:
    response = page("rate_limited.html", status=429, retry_after=retry_after, limit=FAILURE_LIMIT,
                    window_minutes=FAILURE_WINDOW_SECONDS // 60)
    response.headers["Retry-After"] = str(retry_after)
    return response


def _cookie_args(max_age: int) -> dict:
    return {"httponly": True, "samesite": "strict", "secure": session.cookie_secure(), "max_age": max_age,
            "path": "/console"}


@router.get("/console/login")
def login_page() -> Response:
    return _login_form()


def _login_form(problem: str = "", status: int = 200) -> Response:
    # Sign-in has no session yet, so its CSRF token is a double-submit pair: a random value in a
    # short-lived strict cookie and the same value in the form; a foreign page can set neither.
    token = secrets.token_urlsafe(24)
    response = page("login.html", status=status, login_csrf=token, problem=problem)
    response.set_cookie(session.LOGIN_COOKIE, token, **_cookie_args(600))
    return response


@router.post("/console/login")
async def login(request: Request) -> Response:
    fields = await form(request)
    pair = request.cookies.get(session.LOGIN_COOKIE, "")
    if not pair or not hmac.compare_digest(fields.get("csrf", "").encode(), pair.encode()):
        return _login_form("The sign-in form expired; sign in again.", 403)
    address = _address(request)
    wait = await run_in_threadpool(blocked_for, address)
    if wait:
        return _too_many(wait)
    if not session.token_is_admin(fields.get("token", "")):
        await run_in_threadpool(note_failure, address)
        return _login_form("That is not the admin token (SYNDICATE_ADMIN_TOKEN).", 401)
    await run_in_threadpool(get_redis().delete, _failures_key(address))
    response = secure(RedirectResponse("/console", status_code=303))
    response.set_cookie(session.COOKIE, session.create(), **_cookie_args(session.LIFETIME_SECONDS))
    response.delete_cookie(session.LOGIN_COOKIE, path="/console")
    return response


@router.post("/console/logout")
async def logout(request: Request, current: dict = Depends(require_session)) -> Response:
    await checked_form(request)
    session.destroy(current["sid"])
    response = secure(RedirectResponse("/console/login", status_code=303))
    response.delete_cookie(session.COOKIE, path="/console")
    return response
