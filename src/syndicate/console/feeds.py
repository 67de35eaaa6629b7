"""Feed pages of the console: every feed with its items, last render, ETags and links; rebuild.

A rebuild is what ``syndicate feeds rebuild`` does (``feeds.service.rebuild``):
re-index from the article store and render again, here in the API process, so
the page can say when it is done.
"""

from __future__ import annotations


from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from ..config import Settings, get_settings
from ..errors import NotFound
from ..feeds import FORMATS, feed_spec, service, state
from ..feeds import index as feed_index
from ..store import get_redis
from .web import checked_form, page, require_session, secure, when

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_session)])


def links(feed_id: str, settings: Settings, section: str | None = None) -> list[dict]:
    """Each format of a feed: its public URL (as readers see it) and its path on this server."""
    spec = feed_spec(feed_id, settings, section)
    return [{"format": fmt, "url": spec.url(fmt), "path": f"/feeds/{spec.path(fmt)}"} for fmt in FORMATS]


def listing() -> list[dict]:
    client, settings = get_redis(), get_settings()
    rows = []
    for feed_id in feed_index.feed_ids(client):
        section = feed_index.section_name(client, feed_id)
        info = state.status(client, feed_id)
        rows.append({"id": feed_id, "title": feed_spec(feed_id, settings, section).title,
                     "items": int(info["items"] or 0), "rendered_at": when(info["rendered_at"]),
                     "renders": int(info["renders"] or 0), "stale": int(info["gen"] or 0) < int(info["changes"]),
                     "etags": {fmt: info.get(f"{fmt}:etag") for fmt in FORMATS},
                     "links": links(feed_id, settings, section), "file_error": info["file_error"]})
    return rows


@router.get("/console/feeds")
def feeds(request: Request, rebuilt: int = -1) -> Response:
    return page("feeds.html", csrf=request.state.console["csrf"], feeds=listing(),
                rebuilt=rebuilt if rebuilt >= 0 else None)


def _rebuild(feed_id: str) -> int:
    client = get_redis()
    feed_index.discover_sections(client)
    if feed_id and feed_id not in feed_index.feed_ids(client):
        raise NotFound(f"no feed {feed_id!r}; the feeds page lists every feed")
    return len(service.rebuild([feed_id] if feed_id else None))


@router.post("/console/feeds/rebuild")
async def rebuild(request: Request) -> Response:
    fields = await checked_form(request)
    done = await run_in_threadpool(_rebuild, fields.get("feed", "").strip())
    return secure(RedirectResponse(f"/console/feeds?rebuilt={done}", status_code=303))
