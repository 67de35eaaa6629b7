"""What every console and reader page shares: templates, security headers, forms, the session check."""

from __future__ import annotations

import datetime as dt
import functools
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException

from ..api.body import read_limited
from ..errors import Problem
from . import session

HERE = Path(__file__).parent
MAX_FORM_BYTES = 65_536

# No script at all, no framing, nothing from another origin: the pages are plain forms.
CONSOLE_CSP = ("default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; "
               "form-action 'self'; frame-ancestors 'none'")
# An archived edition is the email's own HTML: inline styles and remote images (the stories'
# pictures), still no script, no plugins, no framing.
EDITION_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; "
               "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}


@functools.lru_cache(maxsize=1)
def environment() -> Environment:
    # Autoescape on: list names, headlines, partner URLs and error texts are data. The default
    # Undefined (an absent key renders empty) because the records shown carry optional fields.
    return Environment(loader=FileSystemLoader(str(HERE / "templates")),
                       autoescape=select_autoescape(enabled_extensions=("html", "xml"), default=True))


def secure(response, csp: str = CONSOLE_CSP, private: bool = True):
    response.headers["Content-Security-Policy"] = csp
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    if private:
        response.headers["Cache-Control"] = "no-store"
    return response


def page(name: str, status: int = 200, private: bool = True, **context: Any) -> HTMLResponse:
    context.setdefault("csrf", "")
    context.setdefault("signed_in", bool(context["csrf"]))
    html = environment().get_template(name).render(**context)
    return secure(HTMLResponse(html, status_code=status), private=private)


async def form(request: Request) -> dict[str, str]:
    """The fields of a urlencoded form (the only kind these pages send), last value winning.

    parse_qs from the standard library, not python-multipart: the pages never upload
    files, and the body is read under a size limit first.
    """
    raw = await read_limited(request, MAX_FORM_BYTES)
    return {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True).items()}


def require_session(request: Request) -> dict:
    """Router dependency: the signed-in session, or a refusal (sign-in page for a GET, 403 otherwise)."""
    found = session.lookup(request.cookies.get(session.COOKIE))
    if found is None:
        if request.method in ("GET", "HEAD"):
            raise HTTPException(303, "sign in first", headers={"Location": "/console/login"})
        raise HTTPException(403, "sign in first: no console session")
    request.state.console = found
    return found


async def checked_form(request: Request) -> dict[str, str]:
    """A POSTed form whose CSRF token matches the session's (compared in constant time)."""
    fields = await form(request)
    if not session.csrf_ok(request.state.console, fields.get("csrf")):
        raise HTTPException(403, "the form's CSRF token is missing or wrong; reload the page and try again")
    return fields


# --- error pages --------------------------------------------------------------

TITLES = {400: "Bad input", 401: "Not signed in", 403: "Refused", 404: "Not found", 405: "Not allowed",
          409: "Conflict", 413: "Too large", 422: "Bad input", 429: "Too many attempts",
          503: "Store unavailable"}


def error_page(status: int, message: str, problems: list[Problem] | tuple = (), csrf: str = "",
               headers: dict[str, str] | None = None) -> HTMLResponse:
    """A console error in the console's look: what went wrong, each problem with its field, a way back."""
    response = page("error.html", status=status, csrf=csrf, status_code=status,
                    title=TITLES.get(status, "Server error" if status >= 500 else "Error"),
                    message=message, problems=list(problems))
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _csrf_of(cookie: str | None) -> str:
    try:
        found = session.lookup(cookie)
    except Exception:  # the store is what failed: the error page goes without the signed-in navigation
        return ""
    return (found or {}).get("csrf") or ""


class HtmlErrors:
    """ASGI middleware: console pages answer errors as HTML pages in the console's look, never JSON.

    The API's exception handlers turn every error (a missing partner, a store that is down,
    a refused CSRF token) into its JSON body; under ``/console`` that body is re-rendered
    here with the same status and headers that matter (``Retry-After``, ``Location``).
    An unexpected exception gets a 500 page and still reaches the server's error log.
    """

    KEPT_HEADERS = (b"retry-after", b"location", b"set-cookie")

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == "/console" or path.startswith("/console/")) or path.startswith("/console/static/"):
            await self.app(scope, receive, send)
            return
        held: dict | None = None
        body = bytearray()
        started = False

        async def relay(message) -> None:
            nonlocal held, started
            if message["type"] == "http.response.start":
                content_type = dict(message.get("headers") or []).get(b"content-type", b"")
                if message["status"] >= 400 and content_type.startswith(b"application/json"):
                    held = message
                    return
                started = True
                await send(message)
            elif held is not None:
                body.extend(message.get("body", b""))
                if not message.get("more_body"):
                    await self._replace(scope, held, bytes(body), send)
                    started = True
            else:
                await send(message)

        try:
            await self.app(scope, receive, relay)
        except Exception:
            if not started:
                await self._send(error_page(500, "Unexpected server error; it was logged. Retry later or report it."),
                                 send)
            raise

    async def _replace(self, scope, start: dict, raw: bytes, send) -> None:
        try:
            detail = json.loads(raw)
        except ValueError:
            detail = {}
        if not isinstance(detail, dict):
            detail = {}
        status = start["status"]
        problems = [Problem(str(p.get("path", "")), str(p.get("message", "")))
                    for p in detail.get("problems") or [] if isinstance(p, dict)]
        csrf = ""
        if status not in (429, 503):
            csrf = await run_in_threadpool(_csrf_of, Request(scope).cookies.get(session.COOKIE))
        kept = {k.decode("latin-1"): v.decode("latin-1") for k, v in start.get("headers") or []
                if k.lower() in self.KEPT_HEADERS}
        message = str(detail.get("message") or TITLES.get(status, "error"))
        await self._send(error_page(status, message, problems, csrf, kept), send)

    @staticmethod
    async def _send(response: HTMLResponse, send) -> None:
        await send({"type": "http.response.start", "status": response.status_code,
                    "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


def when(epoch: object) -> str:
    """A stored epoch as the console shows times (UTC); "never" when there is none."""
    try:
        return dt.datetime.fromtimestamp(float(epoch), dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError):
        return "never"


def next_edition(config: dict) -> str:
    """When a list's next edition opens, in the list's own time zone."""
    from ..errors import SyndicateError
    from ..newsletter import cron

    try:
        fire = cron.next_fire(config["schedule"], config["timezone"], dt.datetime.now(dt.timezone.utc))
    except (ValueError, KeyError, SyndicateError) as exc:
        return f"unknown ({exc})"
    if fire is None:
        return "none scheduled"
    return fire.astimezone(cron.zone(config["timezone"])).strftime("%Y-%m-%d %H:%M %Z") + f" ({config['timezone']})"
