"""Pages for readers: a list's page with its subscribe form, and the archive of sent editions.

Public, no cookies. Nothing here reads a subscriber record: the archive shows the
edition as built (its unsubscribe link is a placeholder then, replaced here by the
list's own page), so no page can show an address or a token.
"""

from __future__ import annotations

import datetime as dt
import json

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, Response
from feedgen.feed import FeedGenerator

from ..api import newsletters as newsletters_api
from ..config import get_settings
from ..errors import NotFound, ValidationFailed
from ..newsletter import editions, lists
from ..newsletter.edition import UNSUBSCRIBE_PLACEHOLDER
from .web import EDITION_CSP, HERE, page, secure

router = APIRouter(include_in_schema=False)
LIST_ID = Path(..., pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
# Manual editions are "{list}.m{ms}", scheduled ones "{list}.{YYYYMMDDTHHMMZ}".
EDITION_ID = Path(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]{0,100}$")


def _sent(list_id: str, limit: int = 100) -> list[dict]:
    """The list's sent editions, newest first: skipped, failed or unfinished ones are not published."""
    return [e for e in editions.history(list_id, limit) if e.get("state") == "sent"]


def _content(list_id: str, edition_id: str) -> dict:
    record = editions.get_edition(edition_id)
    if record.get("list") != list_id or record.get("state") != "sent":
        raise NotFound(f"no sent edition {edition_id!r} of list {list_id!r}")
    return json.loads(record.get("content") or "{}")


def _date(epoch: object) -> dt.datetime:
    return dt.datetime.fromtimestamp(float(epoch or 0), dt.timezone.utc)


def reader_page(title: str, message: str, status: int = 200, **context) -> Response:
    """A reader's page in the shared look: a title, one message, optionally a form (confirm, unsubscribe, errors)."""
    response = page("reader_page.html", status=status, private=True, title=title, message=message,
                    alert=status >= 400, **context)
    response.headers["X-Robots-Tag"] = "noindex"
    return response


def _not_found(request: Request, exc: NotFound) -> Response:
    # A browser gets a page in the readers' look; an API client keeps the JSON error shape. The
    # reader is not told the operator's hint the error carries (`syndicate lists list`).
    if "text/html" not in request.headers.get("accept", ""):
        raise exc
    return reader_page("Page not found", "There is no newsletter or edition at this address: check the link "
                       "you followed.", 404)


@router.get("/newsletters/static/reader.css")
def stylesheet() -> Response:
    css = (HERE / "static" / "reader.css").read_bytes()
    return Response(css, media_type="text/css", headers={"Cache-Control": "public, max-age=300",
                                                        "X-Content-Type-Options": "nosniff"})


@router.get("/newsletters/{list_id}")
def list_page(request: Request, list_id: str = LIST_ID) -> Response:
    try:
        config = lists.get_list(list_id)
    except NotFound as exc:
        return _not_found(request, exc)
    return _list_page(config)


def _list_page(config: dict, status: int = 200, private: bool = False, done: bool = False,
               problems: list | tuple = ()) -> Response:
    """The list's page: what it is, the subscribe form (or its outcome), the latest editions."""
    return page("reader_list.html", status=status, private=private, config=config,
                editions=_sent(config["id"], 5), date=_date, done=done, problems=problems)


@router.post("/newsletters/{list_id}")
async def subscribe(request: Request, list_id: str = LIST_ID) -> Response:
    # The public subscribe endpoint's function does the work (double opt-in, the same answer
    # whatever the address's state); this page only turns its answer into HTML.
    try:
        config = lists.get_list(list_id)
    except NotFound as exc:
        return _not_found(request, exc)
    try:
        await newsletters_api.request_subscription(request, list_id)
    except ValidationFailed as exc:
        return _list_page(config, status=422, private=True, problems=exc.problems)
    return _list_page(config, status=202, private=True, done=True)


@router.get("/newsletters/{list_id}/editions")
def archive(request: Request, list_id: str = LIST_ID) -> Response:
    try:
        config = lists.get_list(list_id)
    except NotFound as exc:
        return _not_found(request, exc)
    return page("reader_editions.html", private=False, config=config, editions=_sent(list_id), date=_date)


@router.get("/newsletters/{list_id}/editions.atom")
def atom(list_id: str = LIST_ID) -> Response:
    config = lists.get_list(list_id)
    base = get_settings().public_url.rstrip("/")
    feed = FeedGenerator()
    feed.id(f"{base}/newsletters/{list_id}/editions")
    feed.title(config["name"])
    feed.link(href=f"{base}/newsletters/{list_id}/editions.atom", rel="self")
    feed.link(href=f"{base}/newsletters/{list_id}/editions", rel="alternate")
    sent = _sent(list_id, 50)
    feed.updated(_date(sent[0].get("finished_at") or sent[0].get("created_at")) if sent else _date(0))
    for record in reversed(sent):
        content = _content(list_id, record["id"])
        entry = feed.add_entry()
        url = f"{base}/newsletters/{list_id}/editions/{record['id']}"
        entry.id(url)
        entry.link(href=url)
        entry.title(content.get("subject") or record["id"])
        entry.updated(_date(record.get("finished_at") or record.get("created_at")))
        entry.summary(content.get("text", "")[:2000])
    return Response(feed.atom_str(pretty=True), media_type="application/atom+xml")


@router.get("/newsletters/{list_id}/editions/{edition_id}")
def edition_page(request: Request, list_id: str = LIST_ID, edition_id: str = EDITION_ID) -> Response:
    try:
        content = _content(list_id, edition_id)
    except NotFound as exc:
        return _not_found(request, exc)
    # The email's HTML, built by the newsletter's autoescaping templates; where each reader's
    # unsubscribe link went, the list's page (never anyone's token).
    html = content.get("html", "").replace(UNSUBSCRIBE_PLACEHOLDER, f"/newsletters/{list_id}")
    return secure(HTMLResponse(html), csp=EDITION_CSP, private=False)
