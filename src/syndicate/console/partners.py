"""Partner pages of the console: list, add (secret shown once), disable/enable, ping, delivery log."""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from ..config import get_settings
from ..errors import Conflict, NotFound, Problem, ValidationFailed
from ..webhooks import registry, service
from ..webhooks.guard import Guard
from .web import checked_form, page, require_session, secure

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_session)])
# The admin API's pattern for a partner name (api/partners.py NAME), so both refuse the same names.
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def _name(name: str) -> str:
    if not NAME.match(name):
        raise NotFound(f"no partner {name!r}")
    return name


def _config(fields: dict[str, str]) -> dict:
    """The partner configuration a form describes; registry.add validates it as the API does."""
    config: dict = {"name": fields.get("name", "").strip(), "url": fields.get("url", "").strip()}
    sections = [s.strip() for s in fields.get("sections", "").split(",") if s.strip()]
    if sections:
        config["sections"] = sections
    if fields.get("description", "").strip():
        config["description"] = fields["description"].strip()
    return config


def _listing(request: Request, status: int = 200, problems: list[Problem] = (), fields: dict | None = None):
    return page("partners.html", status=status, csrf=request.state.console["csrf"],
                partners=[registry.public(r) for r in registry.all_partners()], problems=list(problems),
                fields=fields or {})


@router.get("/console/partners")
def partners(request: Request) -> Response:
    return _listing(request)


@router.post("/console/partners")
async def add(request: Request) -> Response:
    fields = await checked_form(request)
    try:
        record, secret = await run_in_threadpool(registry.add, _config(fields), Guard.from_settings(get_settings()))
    except ValidationFailed as exc:
        return _listing(request, 422, exc.problems, fields)
    except Conflict as exc:
        return _listing(request, 409, [Problem("$.name", exc.message)], fields)
    # The secret exists in clear only in this answer: it is never stored or shown again.
    return page("partner_added.html", status=201, csrf=request.state.console["csrf"],
                partner=registry.public(record), secret=secret)


@router.get("/console/partners/{name}")
def partner(request: Request, name: str, delivery: str = "") -> Response:
    shown = registry.shown(_name(name))
    deliveries = service.listing(name, None, 50)
    detail = service.show(delivery) if delivery and any(d["id"] == delivery for d in deliveries) else None
    return page("partner.html", csrf=request.state.console["csrf"], partner=shown, deliveries=deliveries,
                detail=detail, ping=None)


@router.post("/console/partners/{name}/enabled")
async def set_enabled(request: Request, name: str) -> Response:
    fields = await checked_form(request)
    enable = fields.get("enabled") == "true"
    reason = fields.get("reason", "").strip()[:200] or None
    await run_in_threadpool(registry.set_enabled, _name(name), enable, reason)
    return secure(RedirectResponse(f"/console/partners/{name}", status_code=303))


@router.post("/console/partners/{name}/ping")
async def ping(request: Request, name: str) -> Response:
    await checked_form(request)
    result = await run_in_threadpool(service.ping, _name(name), service.context())
    return page("partner.html", csrf=request.state.console["csrf"], partner=registry.shown(name),
                deliveries=service.listing(name, None, 50), detail=None, ping=result)
