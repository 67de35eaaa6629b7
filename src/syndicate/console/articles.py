"""Article pages of the console: find a story by id and read its timeline.

The timeline is what happened to one article, event by event: when it was
logged, when fan-out handed it to the channels, each channel's receipt (or
dead letter, or the receipt still owed), the feeds the story is in now and
every webhook delivery made for it. It reads the records the pipeline keeps
anyway; nothing here writes.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import redis
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from .. import deadletters, events
from ..config import get_settings
from ..errors import NotFound, Problem
from ..feeds import index as feed_index
from ..store import get_redis, key
from ..webhooks import deliveries, service
from ..webhooks.timeparse import iso
from .feeds import links
from .web import error_page, page, require_session, secure

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_session)])

# The article schema's id pattern ($.id), so a mistyped id is named as bad input, not looked up.
ARTICLE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")
CHANNELS = ("feeds", "webhooks", "newsletter")
SCAN_BATCH = 1000


def events_of(article_id: str, client: redis.Redis) -> list[dict]:
    """The article's entries in the event log, oldest first.

    The log is read newest first and the scan stops at the article's ``article.published``
    event: an id's first event is its publication (or a retraction), nothing comes before it.
    """
    found: list[dict] = []
    upper = "+"
    while True:
        batch = client.xrevrange(key("events"), max=upper, min="-", count=SCAN_BATCH)
        for stream_id, fields in batch:
            if fields.get("article_id") == article_id:
                found.append({**fields, "stream_id": stream_id})
        if len(batch) < SCAN_BATCH or any(e.get("type") == "article.published" for e in found):
            break
        upper = "(" + batch[-1][0]
    return found[::-1]


def _receipts(client: redis.Redis, queue: str) -> dict[str, float]:
    """event id -> when ``queue`` recorded its receipt (the newest kept receipts only)."""
    out: dict[str, float] = {}
    for raw in client.lrange(key("receipts", queue), 0, -1):
        try:
            receipt = json.loads(raw)
            out.setdefault(str(receipt["subject"]), float(receipt["at"]))
        except (ValueError, KeyError, TypeError):
            continue
    return out


def _channel_state(event_id: str, channel: str, receipts: dict[str, float], owed: float | None,
                   letters: dict[tuple[str, str], dict], pending: bool) -> dict:
    if event_id in receipts:
        return {"state": "received", "detail": f"receipt at {iso(receipts[event_id])}"}
    letter = letters.get((channel, event_id))
    if letter is not None:
        return {"state": "dead letter", "detail": f"{(letter.get('error') or '')[:300]} (at {iso(letter.get('at'))})"}
    if owed is not None:
        return {"state": "owed", "detail": f"handed over at {iso(owed)}, no receipt yet"}
    if pending:
        return {"state": "waiting", "detail": "not fanned out yet"}
    return {"state": "done", "detail": "settled; its receipt is older than the ones kept"}


def timeline(article_id: str, client: redis.Redis | None = None) -> dict:
    """Everything the console shows about one article; NotFound when the store has never seen it."""
    client = client or get_redis()
    meta = client.hgetall(key("article", article_id))
    if not meta:
        raise NotFound(f"no article with id {article_id!r}; check the id (it is the story's $.id)")
    article = json.loads(meta["json"])
    logged = events_of(article_id, client)
    ids = [e["id"] for e in logged]
    receipts = {queue: _receipts(client, queue) for queue in ("ingest", *CHANNELS)}
    letters = {(r.get("channel") or r.get("queue"), r.get("subject")): r for r in deadletters.listing(1000)}
    with client.pipeline(transaction=False) as pipe:
        for event_id in ids:
            pipe.zscore(key("events:pending"), event_id)
            for channel in CHANNELS:
                pipe.zscore(events.owed_key(channel), event_id)
        scores = pipe.execute()
    rows = []
    for n, entry in enumerate(logged):
        event_id = entry["id"]
        pending, *owed = scores[n * (1 + len(CHANNELS)):(n + 1) * (1 + len(CHANNELS))]
        record = events.get_event(event_id, client) or {}
        fanned = receipts["ingest"].get(event_id)
        made = deliveries.get_many(deliveries.ids_of_event(event_id, client), client)
        rows.append({
            "id": event_id,
            "type": entry.get("type"),
            "version": entry.get("version"),
            "logged_at": iso(int(entry["stream_id"].split("-")[0]) / 1000),
            "kept": bool(record),
            "fanout": (f"fanned out at {iso(fanned)}" if fanned else
                       f"waiting for fan-out since {iso(pending)}" if pending is not None else
                       "fanned out; its receipt is older than the ones kept"),
            "channels": [(c, _channel_state(event_id, c, receipts[c], o, letters, pending is not None))
                         for c, o in zip(CHANNELS, owed)],
            "deliveries": [service.present(d) for d in made],
        })
    feed_ids = feed_index.feed_ids(client)
    with client.pipeline(transaction=False) as pipe:
        for feed_id in feed_ids:
            pipe.zscore(feed_index.index_key(feed_id), article_id)
        present_in = pipe.execute()
    settings = get_settings()
    feeds = [{"id": f, "links": links(f, settings)} for f, score in zip(feed_ids, present_in) if score is not None]
    return {"article": article, "article_status": meta.get("status"), "version": meta.get("version"),
            "events": rows, "feeds": feeds}


@router.get("/console/articles")
def find(request: Request, id: str = "") -> Response:
    csrf = request.state.console["csrf"]
    wanted = id.strip()
    if wanted:
        if not ARTICLE_ID.match(wanted):
            return error_page(400, "That is not an article id.", [Problem(
                "id", "1 to 128 letters, digits, dots, underscores, colons or hyphens, starting with a letter or digit")],
                csrf=csrf)
        return secure(RedirectResponse(f"/console/articles/{quote(wanted, safe='')}", status_code=303))
    return page("articles.html", csrf=csrf, recent=events.recent_events(20))


@router.get("/console/articles/{article_id}")
async def article(request: Request, article_id: str) -> Response:
    if not ARTICLE_ID.match(article_id):
        raise NotFound(f"no article with id {article_id!r}; article ids are letters, digits, dots, underscores, "
                       "colons or hyphens")
    shown = await run_in_threadpool(timeline, article_id)
    return page("article.html", csrf=request.state.console["csrf"], **shown)
