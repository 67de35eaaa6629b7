"""HTTP routes of the newsletters channel.

Admin (bearer admin token), under /v1/newsletters: lists, subscribers (one at a
time or a CSV import), editions, a manual send. Public, no auth and no
cookies: subscribe (double opt-in), confirm, unsubscribe (RFC 8058 one-click
POST), and the preview of the next edition (admin token).
"""

from __future__ import annotations

import csv
import io
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from ..config import get_settings
from ..errors import Conflict, NotFound, Problem, ValidationFailed
from ..newsletter import editions, lists, service, tokens
from ..newsletter.headers import one_line
from .auth import require_admin_token
from .body import read_json, read_limited
from .errors import ApiError
from .openapi import json_body

router = APIRouter(tags=["newsletters"])
admin = [Depends(require_admin_token)]
LIST_ID = Path(..., pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", description="The list's id.")
MAX_CSV_BYTES = 20 * 1024 * 1024
# Subscribe and one-click unsubscribe forms carry an address or a single field.
MAX_FORM_BYTES = 65_536


def _page(title: str, message: str, status: int = 200, action: str | None = None, button: str = "",
          fields: tuple[tuple[str, str], ...] = (), ask_email: bool = False) -> HTMLResponse:
    # The readers' pages share one template and stylesheet (console/templates/reader_base.html).
    # Pages behind emailed links: never cached, never indexed, no cookies, no script.
    from ..console.readers import reader_page

    return reader_page(one_line(title), one_line(message), status, action=action, button=button, fields=fields,
                       ask_email=ask_email)


def _wants_html(request: Request) -> bool:
    """A browser's form post (the expired-link page's form) rather than an API client."""
    return "text/html" in request.headers.get("accept", "")


# --- admin: lists ------------------------------------------------------------

@router.get("/v1/newsletters", dependencies=admin, summary="Every newsletter list")
def get_lists() -> JSONResponse:
    return JSONResponse([{**c, "subscribers": lists.counts(c["id"])} for c in lists.all_lists()])


@router.put("/v1/newsletters/{list_id}", dependencies=admin, summary="Create or replace a list",
            openapi_extra=json_body("newsletter", "NewsletterList", "The list; see src/syndicate/schemas/newsletter.schema.json."))
async def put_list(request: Request, list_id: str = LIST_ID) -> JSONResponse:
    doc = await read_json(request)
    if isinstance(doc, dict):
        doc.setdefault("id", list_id)
        if doc["id"] != list_id:
            raise ValidationFailed([Problem("$.id", f"must match the URL's list id {list_id!r}")])
    config, created = await run_in_threadpool(lists.put_list, doc)
    return JSONResponse(config, status_code=201 if created else 200)


@router.get("/v1/newsletters/{list_id}", dependencies=admin, summary="A list with its state and counts")
def get_list(list_id: str = LIST_ID) -> JSONResponse:
    return JSONResponse({**lists.get_list(list_id), "state": lists.list_state(list_id),
                         "subscribers": lists.counts(list_id), "staged": len(editions.staged(list_id))})


@router.delete("/v1/newsletters/{list_id}", dependencies=admin, status_code=204, summary="Delete a list and its subscribers")
def delete_list(list_id: str = LIST_ID) -> Response:
    lists.delete_list(list_id)
    return Response(status_code=204)


# --- admin: subscribers ------------------------------------------------------

@router.get("/v1/newsletters/{list_id}/subscribers", dependencies=admin, summary="Subscribers of a list")
def get_subscribers(list_id: str = LIST_ID,
                    status: str | None = Query(None, pattern="^(pending|confirmed|unsubscribed)$"),
                    limit: int = Query(1000, ge=1, le=100_000)) -> JSONResponse:
    lists.get_list(list_id)
    out = []
    for record in lists.iter_subscribers(list_id, status):
        out.append({k: record.get(k) for k in ("email", "status", "created_at", "confirmed_at", "source")})
        if len(out) >= limit:
            break
    return JSONResponse(out)


@router.post("/v1/newsletters/{list_id}/subscribers", dependencies=admin, status_code=201,
             summary="Add a confirmed subscriber (the admin vouches for consent)",
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
                 "type": "object", "required": ["email"],
                 "properties": {"email": {"type": "string", "description": "the subscriber's address"}}}}}}})
async def post_subscriber(request: Request, list_id: str = LIST_ID) -> JSONResponse:
    doc = await read_json(request)
    if not isinstance(doc, dict) or not isinstance(doc.get("email"), str):
        raise ValidationFailed([Problem("$.email", "required: the subscriber's email address")])
    record, outcome = await run_in_threadpool(lists.add_subscriber, list_id, doc["email"])
    return JSONResponse({"email": record["email"], "status": record.get("status"), "outcome": outcome},
                        status_code=201 if outcome == "added" else 200)


@router.delete("/v1/newsletters/{list_id}/subscribers/{email}", dependencies=admin, status_code=204,
               summary="Remove a subscriber (kept as unsubscribed)")
def delete_subscriber(email: str, list_id: str = LIST_ID) -> Response:
    lists.remove_subscriber(list_id, email)
    return Response(status_code=204)


@router.post("/v1/newsletters/{list_id}/subscribers/import", dependencies=admin,
             summary="Import subscribers from CSV (a header row with an 'email' column)",
             openapi_extra={"requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}})
async def import_subscribers(request: Request, list_id: str = LIST_ID) -> JSONResponse:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "text/csv":
        raise ApiError(415, "unsupported_media_type", "send the CSV with 'Content-Type: text/csv'")
    raw = await read_limited(request, MAX_CSV_BYTES)
    try:
        reader = csv.DictReader(io.StringIO(raw.decode("utf-8-sig")))
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_utf8", "the CSV is not UTF-8; re-encode it") from None
    fields = [f.strip().lower() for f in reader.fieldnames or []]
    if "email" not in fields:
        raise ValidationFailed([Problem("$", "the CSV needs a header row with an 'email' column")])
    reader.fieldnames = fields
    result = await run_in_threadpool(lists.import_rows, list_id, reader)
    return JSONResponse(result)


# --- admin: editions ---------------------------------------------------------

@router.get("/v1/newsletters/{list_id}/editions", dependencies=admin, summary="Edition history, skipped ones included")
def get_editions(list_id: str = LIST_ID, limit: int = Query(50, ge=1, le=1000)) -> JSONResponse:
    lists.get_list(list_id)
    return JSONResponse(editions.history(list_id, limit))


@router.get("/v1/newsletters/{list_id}/editions/{edition_id}", dependencies=admin,
            summary="One edition: counts, and the refused, failed and in-doubt recipients")
def get_edition(edition_id: str, list_id: str = LIST_ID) -> JSONResponse:
    out = service.summary(edition_id)
    if out.get("list") != list_id:
        raise NotFound(f"no edition {edition_id!r} on list {list_id!r}")
    for status in ("refused", "failed", "doubt"):
        out[status] = editions.recipient_statuses(edition_id, status)
    return JSONResponse(out)


@router.post("/v1/newsletters/{list_id}/send", dependencies=admin, status_code=202,
             summary="Open a manual edition now and queue it for sending")
def send_now(list_id: str = LIST_ID) -> JSONResponse:
    from syndicate.workers.newsletter import send_edition

    eid = service.open_manual(list_id)
    send_edition.apply_async(args=[eid])
    return JSONResponse({"edition_id": eid}, status_code=202)


@router.post("/v1/newsletters/{list_id}/editions/{edition_id}/resume", dependencies=admin, status_code=202,
             summary="Go on with a failed edition (after fixing its cause, e.g. the SMTP credentials)")
def resume_edition(edition_id: str, list_id: str = LIST_ID) -> JSONResponse:
    from syndicate.workers.newsletter import send_edition

    service.reopen_failed(edition_id, list_id)
    send_edition.apply_async(args=[edition_id])
    return JSONResponse({"edition_id": edition_id}, status_code=202)


@router.get("/newsletters/{list_id}/preview", dependencies=admin, summary="The next edition, not sent")
def preview(list_id: str = LIST_ID, format: str = Query("html", pattern="^(html|text)$")) -> Response:
    body, count = service.preview(list_id, format)
    headers = {"X-Edition-Stories": str(count), "Cache-Control": "no-store"}
    if count == 0:
        body = "No new stories: the next edition would be skipped.\n"
        return PlainTextResponse(body, headers=headers)
    if format == "text":
        return PlainTextResponse(body, headers=headers)
    return HTMLResponse(body, headers=headers)


# --- public: subscribe, confirm, unsubscribe ------------------------------------

async def _form(request: Request) -> dict[str, str]:
    """Form fields of a urlencoded or multipart body (RFC 8058 allows both), or JSON."""
    media = request.headers.get("content-type", "")
    kind = media.split(";")[0].strip().lower()
    if kind == "application/json" or kind.endswith("+json"):
        doc = await read_json(request)
        return {k: v for k, v in doc.items() if isinstance(v, str)} if isinstance(doc, dict) else {}
    raw = await read_limited(request, MAX_FORM_BYTES)
    if kind == "application/x-www-form-urlencoded":
        return {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
    if kind == "multipart/form-data":
        message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {media}\r\n\r\n".encode() + raw)
        out = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name:
                out[name] = str(part.get_content()).strip()
        return out
    return {}


async def request_subscription(request: Request, list_id: str) -> None:
    """Ask for the subscription the form names (double opt-in); ValidationFailed for a bad address."""
    fields = await _form(request)
    sid = await run_in_threadpool(service.request_subscription, list_id, fields.get("email", ""))
    if sid:
        from syndicate.workers.newsletter import send_confirmation

        send_confirmation.apply_async(args=[list_id, sid])


@router.post("/newsletters/{list_id}/subscribe", status_code=202,
             summary="Ask to subscribe: a confirmation email with a signed, expiring link follows")
async def subscribe(request: Request, list_id: str = LIST_ID) -> JSONResponse:
    try:
        await request_subscription(request, list_id)
    except ValidationFailed as exc:
        if not _wants_html(request):
            raise
        return _page("Check the address", exc.problems[0].message, 422, action=f"/newsletters/{list_id}/subscribe",
                     button="Send me a new link", ask_email=True)
    # The same answer whether the address was new, pending or already in: it reveals nothing.
    if _wants_html(request):
        return _page("Check your inbox", "We sent a link to confirm your subscription; nothing is sent until "
                     "you press it.", 202)
    return JSONResponse({"status": "pending", "message": "check your inbox for a confirmation link"}, status_code=202)


def _expired_confirmation(token: str) -> HTMLResponse:
    # The MAC was good, only the time ran out: name the list and offer a fresh link on the spot.
    hours = int(get_settings().newsletter_confirm_hours)
    try:
        data = tokens.verify(get_settings().secret_key, tokens.CONFIRM, token, now=0)
        config = lists.get_list(data.list_id)
    except (tokens.TokenError, NotFound):
        return _page("Link expired", f"This confirmation link has expired (links work for {hours} hours). "
                     "Subscribe again from the newsletter's sign-up form to get a new link.", 410)
    return _page("Link expired", f"This confirmation link for {config['name']} has expired (links work for "
                 f"{hours} hours). To subscribe, enter your address again: we will email you a new link.", 410,
                 action=f"/newsletters/{data.list_id}/subscribe", button="Send me a new link", ask_email=True)


def _confirmation_target(token: str):
    """(token data, list config), or the page to answer with instead."""
    try:
        data = tokens.verify(get_settings().secret_key, tokens.CONFIRM, token)
        return (data, lists.get_list(data.list_id)), None
    except tokens.TokenError as exc:
        if exc.expired:
            return None, _expired_confirmation(token)
        return None, _page("Link not valid", str(exc), 400)
    except NotFound as exc:
        return None, _page("Subscription not found", exc.message, 404)


@router.get("/newsletters/confirm/{token}", response_class=HTMLResponse, summary="The confirmation page (does not confirm)")
def confirm_page(token: str) -> HTMLResponse:
    # A GET never confirms: mail scanners follow every link in a message. The button POSTs.
    target, problem = _confirmation_target(token)
    if problem is not None:
        return problem
    _data, config = target
    return _page(f"Subscribe to {config['name']}?", "Press the button to confirm your subscription.",
                 action=f"/newsletters/confirm/{token}", button="Confirm my subscription")


@router.post("/newsletters/confirm/{token}", response_class=HTMLResponse, summary="Confirm a subscription")
def confirm(token: str) -> HTMLResponse:
    target, problem = _confirmation_target(token)
    if problem is not None:
        return problem
    data, config = target
    try:
        lists.confirm(data.list_id, data.subscriber_id)
    except (NotFound, Conflict) as exc:
        return _page("Subscription not found", exc.message, 404)
    return _page("Subscribed", f"You will receive {config['name']}. Every email has a link to unsubscribe.")


def _unsubscribe_target(token: str):
    try:
        data = tokens.verify(get_settings().secret_key, tokens.UNSUBSCRIBE, token)
        return data, lists.get_list(data.list_id)
    except tokens.TokenError as exc:
        raise ApiError(400, "invalid_token", str(exc)) from None


@router.get("/unsubscribe/{token}", response_class=HTMLResponse, summary="Unsubscribe confirmation page")
def unsubscribe_page(token: str) -> HTMLResponse:
    # A GET never unsubscribes: mail scanners follow links. The button POSTs the RFC 8058 body.
    try:
        _data, config = _unsubscribe_target(token)
    except (ApiError, NotFound):
        return _page("Link not valid", "This unsubscribe link is not valid; copy the whole link from the email.", 400)
    return _page(f"Unsubscribe from {config['name']}?", "You will not receive it any more.",
                 action=f"/unsubscribe/{token}", button="Unsubscribe", fields=(("List-Unsubscribe", "One-Click"),))


@router.post("/unsubscribe/{token}", summary="Unsubscribe (RFC 8058 one-click: body List-Unsubscribe=One-Click)")
async def unsubscribe(request: Request, token: str) -> Response:
    fields = await _form(request)
    if fields.get("List-Unsubscribe") != "One-Click":
        raise ApiError(400, "bad_request", "send the form body List-Unsubscribe=One-Click")
    try:
        data, config = _unsubscribe_target(token)
    except NotFound:
        return _page("Unsubscribed", "This list no longer exists; you will not receive it.")
    await run_in_threadpool(lists.unsubscribe, data.list_id, data.subscriber_id)
    return _page("Unsubscribed", f"You will not receive {config['name']} any more.")
