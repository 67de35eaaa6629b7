"""HTTP routes of the feeds channel: the stored documents, with conditional GET.

Serving never renders. A document this process has served is answered from
memory by ``feedcache.FeedFastPath`` until the store reports a change to its
feed; otherwise each request reads the stored ETag and Last-Modified (one small
HMGET) and the body only when this process has not cached that ETag's bytes yet,
so a poll costs at most one round trip to Redis and a 304 costs no body at all.
"""

from __future__ import annotations

import asyncio
import re

import redis.asyncio as aioredis
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ..config import get_settings
from ..feeds import FORMATS, MAIN_FEED, feed_spec, state
from ..feeds.conditional import link_header, not_modified
from ..store import async_client, key
from .errors import ApiError
from .feedcache import Entry

router = APIRouter(tags=["feeds"])

_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")  # what syndicate.feeds.slugify produces
_clients: dict[int, aioredis.Redis] = {}
# (feed id, format) -> (etag, body): bytes of the last version served by this process.
_bodies: dict[tuple[str, str], tuple[str, bytes]] = {}


def _redis() -> aioredis.Redis:
    # One pool per event loop: asyncio connections cannot cross loops.
    loop_id = id(asyncio.get_running_loop())
    client = _clients.get(loop_id)
    if client is None:
        client = _clients[loop_id] = async_client(decode=False)
    return client


def _text(value: bytes | None) -> str | None:
    return value.decode() if value is not None else None


async def _serve(request: Request, feed_id: str, fmt: str) -> Response:
    if fmt not in FORMATS:
        raise ApiError(404, "not_found", f"no feed format {fmt!r}; use one of: {', '.join(FORMATS)}")
    client = _redis()
    cache = request.app.state.feed_cache
    cache.ensure_following(_redis, state.changes_key())
    epoch = cache.epoch(feed_id)  # noted before reading: a change seen meanwhile keeps this read uncached
    doc = state.doc_key(feed_id)
    etag, last_modified = map(_text, await client.hmget(doc, [f"{fmt}:etag", f"{fmt}:lm"]))
    if etag is None or last_modified is None:
        if feed_id == MAIN_FEED:
            # Never rendered here: a feeds worker renders it (empty) at start and on every sweep.
            raise ApiError(404, "not_found", "the main feed is not rendered yet: start a feeds worker "
                                             "(it renders it at once) or run `syndicate feeds rebuild`")
        raise ApiError(404, "not_found", f"no feed {feed_id!r} yet: it appears once a story is published "
                                         "to it (or after `syndicate feeds rebuild`)")
    settings = get_settings()
    spec = feed_spec(feed_id, settings)
    headers = {
        "ETag": etag,
        "Last-Modified": last_modified,
        "Cache-Control": f"public, max-age={settings.feed_max_age}",
        "X-Content-Type-Options": "nosniff",
    }
    link = link_header(spec.url(fmt), settings.websub_hub)
    if link:
        headers["Link"] = link
    conditions = request.headers.get("if-none-match"), request.headers.get("if-modified-since")
    path = request.scope["path"]
    cacheable = epoch is not None and not request.url.query
    if not_modified(*conditions, etag, last_modified) and not (cacheable and path not in cache.entries):
        return Response(status_code=304, headers=headers)
    cached = _bodies.get((feed_id, fmt))
    if cached and cached[0] == etag:
        body = cached[1]
    else:
        compressed, plain, etag_now = await client.hmget(doc, [*state.body_fields(fmt), f"{fmt}:etag"])
        body_now = state.body_of(compressed, plain)
        if body_now is None:
            raise ApiError(404, "not_found", f"no feed {feed_id!r}")
        # A render may have landed between the two reads: serve the newer pair, consistently.
        etag = headers["ETag"] = _text(etag_now) or etag
        headers["Last-Modified"] = last_modified = _text(await client.hget(doc, f"{fmt}:lm")) or last_modified
        body = body_now
        _bodies[(feed_id, fmt)] = (etag, body)
    media_type = FORMATS[fmt][1]
    if cacheable:
        encoded = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
        cache.fill(path, epoch, Entry(feed_id, etag, last_modified, body,
                                                  [*encoded, (b"content-type", media_type.encode())], encoded))
    if not_modified(*conditions, etag, last_modified):
        return Response(status_code=304, headers=headers)
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(body))
        return Response(status_code=200, headers=headers, media_type=media_type)
    return Response(body, status_code=200, headers=headers, media_type=media_type)


_RESPONSES = {200: {"description": "The feed document", "content": {
                  "application/rss+xml": {}, "application/atom+xml": {}, "application/feed+json": {}}},
              304: {"description": "Not modified (If-None-Match / If-Modified-Since matched)"},
              404: {"description": "No such feed or format"}}


@router.get("/feeds/all.{fmt}", responses=_RESPONSES, operation_id="get_main_feed",
            summary="The main feed (every section) as rss, atom or json")
@router.head("/feeds/all.{fmt}", responses=_RESPONSES, operation_id="head_main_feed",
             summary="Headers of the main feed")
async def main_feed(request: Request, fmt: str) -> Response:
    return await _serve(request, MAIN_FEED, fmt)


@router.get("/feeds/sections/{slug}.{fmt}", responses=_RESPONSES, operation_id="get_section_feed",
            summary="One section's feed as rss, atom or json")
@router.head("/feeds/sections/{slug}.{fmt}", responses=_RESPONSES, operation_id="head_section_feed",
             summary="Headers of one section's feed")
async def section_feed(request: Request, slug: str, fmt: str) -> Response:
    if not _SLUG.match(slug):
        raise ApiError(404, "not_found", f"no section feed {slug!r}; GET /feeds lists every feed")
    return await _serve(request, f"sections/{slug}", fmt)


@router.get("/feeds", summary="Every feed with its URLs")
async def feed_index() -> JSONResponse:
    client = _redis()
    settings = get_settings()
    names = {k.decode(): v.decode() for k, v in (await client.hgetall(key("feeds", "sections"))).items()}
    feeds = []
    for feed_id, title in [(MAIN_FEED, None), *((f"sections/{s}", n) for s, n in sorted(names.items()))]:
        spec = feed_spec(feed_id, settings, title)
        items, updated = await client.hmget(state.doc_key(feed_id), ["items", "updated"])
        feeds.append({"id": feed_id, "title": spec.title, "section": title, "items": int(items or 0),
                      "updated": _text(updated), "urls": {fmt: spec.url(fmt) for fmt in FORMATS}})
    return JSONResponse({"feeds": feeds})
