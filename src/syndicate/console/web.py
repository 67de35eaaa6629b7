"""What every console and reader page shares: templates, security headers, forms, the session check."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException

from ..api.body import read_limited
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
