"""The console's dashboard and dead-letter pages (session required)."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from .. import deadletters, instance
from ..feeds import index as feed_index
from ..feeds import state as feed_state
from ..newsletter import lists
from ..store import get_redis, key
from ..webhooks import registry
from .web import checked_form, next_edition, page, require_session, secure, when

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_session)])


def _overview() -> dict:
    from syndicate.queues import QUEUES, queue_depths

    client = get_redis()
    partners = []
    for record in registry.all_partners(client):
        health = registry.health(record["name"], client)
        if not record.get("enabled", True) or health.get("failing_since"):
            partners.append({"name": record["name"], "enabled": record.get("enabled", True),
                             "reason": record.get("disabledReason") or "",
                             "failing_since": when(health["failing_since"]) if health.get("failing_since") else ""})
    return {
        "queues": list(queue_depths(QUEUES).items()),
        "workers": instance.live_workers(client),
        "feeds": [(fid, feed_state.status(client, fid)) for fid in feed_index.feed_ids(client)],
        "partners": partners,
        "lists": [(c["id"], c["name"], next_edition(c)) for c in lists.all_lists(client)],
        "dead_letters": client.llen(key("dead-letters")),
    }


@router.get("/console")
def dashboard(request: Request) -> Response:
    return page("dashboard.html", csrf=request.state.console["csrf"], when=when, **_overview())


# What a requeue did, named by a code in the redirect so a crafted link cannot put words on the page.
OUTCOMES = {
    "requeued": "Requeued: the task is back on its queue.",
    "gone": "That dead letter is no longer listed (already requeued?).",
    "no-task": "That dead letter names no task: it cannot be requeued.",
}


@router.get("/console/dead-letters")
def dead_letters(request: Request, done: str = "") -> Response:
    records = [(json.dumps(r, sort_keys=True), r) for r in deadletters.listing(200)]
    return page("dead_letters.html", csrf=request.state.console["csrf"], records=records, when=when,
                done=OUTCOMES.get(done, ""))


def _requeue(raw: str) -> str:
    """Send one dead letter's task again, then drop the record: what `syndicate dead-letters requeue` does.

    The record is named by its exact stored JSON, so two identical-looking letters are
    requeued one at a time and a stale page never requeues a different one.
    """
    from syndicate.workers.app import app

    client = get_redis()
    stored = {json.dumps(json.loads(x), sort_keys=True): x for x in client.lrange(key("dead-letters"), 0, -1)}
    original = stored.get(raw)
    if original is None:
        return "gone"
    record = json.loads(original)
    if not record.get("task"):
        return "no-task"
    app.send_task(record["task"], args=record.get("args") or [], kwargs=record.get("kwargs") or {})
    client.lrem(key("dead-letters"), -1, original)
    return "requeued"


@router.post("/console/dead-letters/requeue")
async def requeue(request: Request) -> Response:
    fields = await checked_form(request)
    outcome = await run_in_threadpool(_requeue, fields.get("record", ""))
    return secure(RedirectResponse(f"/console/dead-letters?done={outcome}", status_code=303))
