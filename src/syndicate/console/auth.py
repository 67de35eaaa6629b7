"""Sign-in and sign-out of the operator console."""

from __future__ import annotations

import hmac
import secrets

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from . import session
from .web import checked_form, form, page, require_session, secure

router = APIRouter(include_in_schema=False)


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
    if not session.token_is_admin(fields.get("token", "")):
        return _login_form("That is not the admin token (SYNDICATE_ADMIN_TOKEN).", 401)
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
