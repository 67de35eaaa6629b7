"""Newsletter pages of the console: lists, subscribers, CSV import, preview, send now, past editions.

Every action goes through the same domain functions as the admin API and the
CLI (``newsletter.lists``, ``newsletter.service``, ``newsletter.editions``). The
console is behind the admin sign-in, so it shows subscribers' addresses; the
readers' pages never do.
"""

from __future__ import annotations

import csv
import io
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from ..api.body import read_limited
from ..errors import NotFound, Problem, ValidationFailed
from ..newsletter import editions, lists, service
from . import session
from .web import EDITION_CSP, checked_form, next_edition, page, require_session, secure, when

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_session)])
LIST_ID = Path(..., pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
EDITION_ID = Path(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]{0,100}$")
MAX_CSV_BYTES = 20 * 1024 * 1024  # the admin API's import limit
SHOWN = 200  # subscribers listed per page; the search narrows the rest
# The preview is the email's own HTML, framed by the console page: no script, no forms, and a
# sandbox even when opened on its own.
PREVIEW_CSP = EDITION_CSP.replace("form-action 'self'", "form-action 'none'").replace(
    "frame-ancestors 'none'", "frame-ancestors 'self'") + "; sandbox"

# What an action did, named by a code in the redirect so a crafted link cannot put words on the page.
OUTCOMES = {
    "added": "Added: the address is a confirmed subscriber.",
    "confirmed": "Confirmed: the address was waiting for its confirmation and is now subscribed.",
    "resubscribed": "Subscribed again: the address had unsubscribed.",
    "unchanged": "Already subscribed: nothing changed.",
    "removed": "Removed: the address is kept as unsubscribed, so an import does not bring it back.",
}


def _csrf(request: Request) -> str:
    return request.state.console["csrf"]


def _subscribers(list_id: str, query: str, status: str) -> tuple[list[dict], int]:
    """The subscribers matching the search (part of the address, any case), sorted, and how many match."""
    needle = query.strip().lower()
    found = [s for s in lists.iter_subscribers(list_id, status or None) if needle in s["email"].lower()]
    found.sort(key=lambda s: s["email"])
    return found[:SHOWN], len(found)


def _list_page(request: Request, list_id: str, status_code: int = 200, done: str = "", q: str = "",
               status: str = "", problems: list[Problem] = (), email: str = "", imported: dict | None = None):
    config = lists.get_list(list_id)
    shown, matching = _subscribers(list_id, q, status)
    return page("newsletter.html", status=status_code, csrf=_csrf(request), config=config,
                next_run=next_edition(config), counts=lists.counts(list_id), staged=len(editions.staged(list_id)),
                subscribers=shown, matching=matching, q=q, filter_status=status, when=when,
                editions=editions.history(list_id, 20), done=OUTCOMES.get(done, ""), problems=list(problems),
                email=email, imported=imported)


@router.get("/console/newsletters")
def overview(request: Request) -> Response:
    rows = [(c, next_edition(c), lists.counts(c["id"])) for c in lists.all_lists()]
    return page("newsletters.html", csrf=_csrf(request), rows=rows)


@router.get("/console/newsletters/{list_id}")
def newsletter(request: Request, list_id: str = LIST_ID, q: str = "", status: str = "", done: str = "") -> Response:
    if status not in ("", lists.PENDING, lists.CONFIRMED, lists.UNSUBSCRIBED):
        status = ""
    return _list_page(request, list_id, done=done, q=q[:254], status=status)


@router.post("/console/newsletters/{list_id}/subscribers")
async def add(request: Request, list_id: str = LIST_ID) -> Response:
    fields = await checked_form(request)
    email = fields.get("email", "")
    try:
        _record, outcome = await run_in_threadpool(lists.add_subscriber, list_id, email)
    except ValidationFailed as exc:
        return await run_in_threadpool(_list_page, request, list_id, 422, problems=exc.problems, email=email)
    return secure(RedirectResponse(f"/console/newsletters/{list_id}?done={outcome}", status_code=303))


@router.post("/console/newsletters/{list_id}/subscribers/remove")
async def remove(request: Request, list_id: str = LIST_ID) -> Response:
    fields = await checked_form(request)
    try:
        await run_in_threadpool(lists.remove_subscriber, list_id, fields.get("email", ""))
    except ValidationFailed as exc:
        return await run_in_threadpool(_list_page, request, list_id, 422, problems=exc.problems)
    except NotFound as exc:
        return await run_in_threadpool(_list_page, request, list_id, 404, problems=[Problem("$.email", exc.message)])
    return secure(RedirectResponse(f"/console/newsletters/{list_id}?done=removed", status_code=303))


async def _upload(request: Request) -> dict[str, str]:
    """The import form's fields (multipart: a file and/or pasted text), with its CSRF token checked.

    Parsed with the standard library's email parser, as the admin API parses RFC 8058
    multipart bodies, under the API's CSV size limit.
    """
    media = request.headers.get("content-type", "")
    raw = await read_limited(request, MAX_CSV_BYTES)
    fields: dict[str, str] = {}
    if media.split(";")[0].strip().lower() == "multipart/form-data":
        message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {media}\r\n\r\n".encode() + raw)
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name:
                fields[name] = part.get_payload(decode=True).decode("utf-8-sig", "replace")
    elif media.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
        fields = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True).items()}
    if not session.csrf_ok(request.state.console, fields.get("csrf")):
        raise HTTPException(403, "the form's CSRF token is missing or wrong; reload the page and try again")
    return fields


def _rows(text: str):
    """The CSV's rows, keyed by lower-cased header; ValidationFailed without an 'email' column."""
    reader = csv.DictReader(io.StringIO(text))
    names = [f.strip().lower() for f in reader.fieldnames or []]
    if "email" not in names:
        raise ValidationFailed([Problem("$", "the CSV needs a header row with an 'email' column")])
    reader.fieldnames = names
    return reader


@router.post("/console/newsletters/{list_id}/import")
async def import_csv(request: Request, list_id: str = LIST_ID) -> Response:
    fields = await _upload(request)
    text = fields.get("file", "").strip() or fields.get("csv", "").strip()
    await run_in_threadpool(lists.get_list, list_id)
    if not text:
        problem = Problem("$", "choose a CSV file or paste its rows")
        return await run_in_threadpool(_list_page, request, list_id, 422, problems=[problem])
    try:
        result = await run_in_threadpool(lists.import_rows, list_id, _rows(text))
    except ValidationFailed as exc:
        return await run_in_threadpool(_list_page, request, list_id, 422, problems=exc.problems)
    return await run_in_threadpool(_list_page, request, list_id, imported=result)


@router.get("/console/newsletters/{list_id}/preview")
def preview(request: Request, list_id: str = LIST_ID) -> Response:
    config = lists.get_list(list_id)
    _body, count = service.preview(list_id, "html")
    return page("newsletter_preview.html", csrf=_csrf(request), config=config, count=count,
                next_run=next_edition(config))


@router.get("/console/newsletters/{list_id}/preview.html")
def preview_document(list_id: str = LIST_ID) -> Response:
    # Exactly what the API's preview answers, from the same render: the email as it will be sent
    # (each reader's unsubscribe link goes where "#unsubscribe-preview" is).
    body, count = service.preview(list_id, "html")
    if count == 0:
        body = "<p>No new stories: the next edition would be skipped.</p>"
    response = secure(HTMLResponse(body, headers={"X-Edition-Stories": str(count)}), csp=PREVIEW_CSP)
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


@router.post("/console/newsletters/{list_id}/send")
async def send_now(request: Request, list_id: str = LIST_ID) -> Response:
    from syndicate.workers.newsletter import send_edition

    await checked_form(request)
    eid = await run_in_threadpool(service.open_manual, list_id)
    send_edition.apply_async(args=[eid])
    return secure(RedirectResponse(f"/console/newsletters/{list_id}/editions/{eid}", status_code=303))


def _outcomes(eid: str) -> list[dict]:
    """Each recipient's outcome (sent, refused, failed, doubt, skipped, or still pending), by address."""
    out = []
    for address, value in sorted(editions.recipient_statuses(eid).items()):
        status, _, rest = value.partition(":")
        at, _, detail = rest.partition(":")
        if status in ("claimed", "committing", "retry"):
            status, detail = "pending", detail if status == "retry" else ""
        out.append({"email": address, "status": status, "at": when(at) if at else "", "detail": detail})
    return out


@router.get("/console/newsletters/{list_id}/editions/{edition_id}")
def edition(request: Request, list_id: str = LIST_ID, edition_id: str = EDITION_ID) -> Response:
    config = lists.get_list(list_id)
    try:
        summary = service.summary(edition_id)
    except NotFound:
        summary = {}
    if summary.get("list") != list_id:
        raise NotFound(f"no edition {edition_id!r} of list {list_id!r}")
    return page("newsletter_edition.html", csrf=_csrf(request), config=config, edition=summary, when=when,
                outcomes=_outcomes(edition_id))
