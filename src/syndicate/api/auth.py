"""Bearer-token checks, compared in constant time."""

from __future__ import annotations

import hmac

from fastapi import Request

from ..config import get_settings
from .errors import ApiError


def _check(request: Request, expected: str | None, what: str) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if expected is None:
        raise ApiError(503, "not_configured", f"the {what} token is not configured; set SYNDICATE_{what.upper()}_TOKEN")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise ApiError(
            401,
            "unauthorized",
            f"send 'Authorization: Bearer <{what} token>' with a valid token",
            headers={"WWW-Authenticate": 'Bearer realm="syndicate"'},
        )


def require_ingest_token(request: Request) -> None:
    _check(request, get_settings().api_token, "api")


def require_admin_token(request: Request) -> None:
    _check(request, get_settings().admin_token, "admin")
