"""Partner pages of the console: list, add, edit filters, disable/enable, rotate the secret, ping,
the delivery log with every attempt, resend one delivery, recover since a time.

Every action calls the function the admin API and the CLI call (``webhooks.registry``,
``webhooks.service``); a secret exists in clear only in the page that answers its
creation or rotation.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from ..api.partners import enqueue_deliveries
from ..config import get_settings
from ..errors import Conflict, NotFound, Problem, ValidationFailed
from ..ingest import EVENT_TYPES
from ..webhooks import registry, service
from ..webhooks.guard import Guard
from ..webhooks.timeparse import iso, parse_since
from .web import checked_form, page, require_session, secure

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_session)])
# The admin API's pattern for a partner name (api/partners.py NAME), so both refuse the same names.
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}\Z")
DELIVERY = re.compile(r"^msg_[A-Za-z0-9_]{1,64}\Z")


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
        return _listing(request, 400, exc.problems, fields)
    except Conflict as exc:
        return _listing(request, 409, [Problem("$.name", exc.message)], fields)
    # The secret exists in clear only in this answer: it is never stored or shown again.
    return page("partner_added.html", status=201, csrf=request.state.console["csrf"],
                partner=registry.public(record), secret=secret)


# What an action did, named by a code in the redirect so a crafted link cannot put words on the page.
OUTCOMES = {
    "filters": "Filters saved: the next events are matched against them.",
    "resent": "Resent: the delivery starts a new round of attempts, same webhook-id and body.",
    "recovered": "Recovered: the failed and skipped deliveries since that time start a new round of attempts.",
}


def _sections(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def _partner_page(request: Request, name: str, status: int = 200, delivery: str = "", **extra) -> Response:
    shown = registry.shown(_name(name))
    detail = None
    if delivery:
        detail = service.show(delivery) if DELIVERY.match(delivery) else None
        if detail is None or detail["partner"] != name:
            raise NotFound(f"no delivery {delivery!r} to partner {name!r}")
    context = {"ping": None, "problems": [], "fields": {}, "done": "", "resent": None}
    context.update(extra)
    return page("partner.html", status=status, csrf=request.state.console["csrf"], partner=shown,
                deliveries=service.listing(name, None, 50), detail=detail, event_types=EVENT_TYPES, **context)


@router.get("/console/partners/{name}")
def partner(request: Request, name: str, delivery: str = "", done: str = "") -> Response:
    return _partner_page(request, name, delivery=delivery, done=OUTCOMES.get(done, ""))


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
    return _partner_page(request, name, ping=result)


def _save_filters(name: str, fields: dict[str, str]) -> None:
    """The partner's configuration with the form's event types and sections, through ``replace_config``
    (validated as PUT /v1/partners/{name} validates it)."""
    record = registry.get(name)
    config = {k: v for k, v in record.items() if k in registry.CONFIG_FIELDS or k.startswith("x-")}
    config["eventTypes"] = [t for t in EVENT_TYPES if fields.get(f"type:{t}")]
    config["sections"] = _sections(fields.get("sections", ""))
    registry.replace_config(name, config, Guard.from_settings(get_settings()))


@router.post("/console/partners/{name}/filters")
async def filters(request: Request, name: str) -> Response:
    fields = await checked_form(request)
    try:
        await run_in_threadpool(_save_filters, _name(name), fields)
    except ValidationFailed as exc:
        return _partner_page(request, name, 400, problems=exc.problems, fields=fields)
    return secure(RedirectResponse(f"/console/partners/{name}?done=filters", status_code=303))


def _grace_hours(text: str) -> float:
    if not text.strip():
        return get_settings().webhook_rotation_grace_hours
    try:
        hours = float(text)
    except ValueError:
        hours = -1.0
    if not 0 <= hours <= 24 * 30:  # NaN fails this too
        raise ValidationFailed([Problem("grace_hours", "a number of hours from 0 to 720 (empty: the default)")])
    return hours


@router.post("/console/partners/{name}/rotate")
async def rotate(request: Request, name: str) -> Response:
    fields = await checked_form(request)
    try:
        hours = _grace_hours(fields.get("grace_hours", ""))
    except ValidationFailed as exc:
        return _partner_page(request, name, 400, problems=exc.problems, fields=fields)
    record, secret = await run_in_threadpool(registry.rotate, _name(name), hours * 3600)
    # The new secret exists in clear only in this answer: it is never stored readable or shown again.
    return page("partner_rotated.html", csrf=request.state.console["csrf"], partner=registry.public(record),
                secret=secret, grace_hours=hours)


def _resend(name: str, delivery: str) -> None:
    found = service.show(delivery) if DELIVERY.match(delivery) else None
    if found is None or found["partner"] != name:
        raise NotFound(f"no delivery {delivery!r} to partner {name!r}")
    service.resend(delivery, service.context())
    enqueue_deliveries([delivery])


@router.post("/console/partners/{name}/deliveries/{delivery}/resend")
async def resend(request: Request, name: str, delivery: str) -> Response:
    await checked_form(request)
    await run_in_threadpool(_resend, _name(name), delivery)
    return secure(RedirectResponse(f"/console/partners/{name}?delivery={delivery}&done=resent", status_code=303))


def _recover(name: str, since_text: str) -> tuple[float, list[str]]:
    if not since_text.strip():
        raise ValidationFailed([Problem("since", "required: an RFC 3339 time such as 2026-02-05T07:30:00Z, "
                                                 "or an age such as 2h")])
    try:
        since = parse_since(since_text)
    except ValidationFailed as exc:
        raise ValidationFailed([Problem("since", p.message) for p in exc.problems]) from None
    ids = service.recover(name, since, service.context())
    enqueue_deliveries(ids)
    return since, ids


@router.post("/console/partners/{name}/recover")
async def recover(request: Request, name: str) -> Response:
    fields = await checked_form(request)
    try:
        since, ids = await run_in_threadpool(_recover, _name(name), fields.get("since", ""))
    except ValidationFailed as exc:
        return _partner_page(request, name, 400, problems=exc.problems, fields=fields)
    return _partner_page(request, name, done=OUTCOMES["recovered"], resent={"since": iso(since), "ids": ids})
