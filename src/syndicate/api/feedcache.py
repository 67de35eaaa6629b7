"""The lean path for feed polls: documents cached in the API process, dropped on every change.

Feed readers poll the same few documents all day. Once a document has been served,
this process keeps its bytes and ready-made response headers, and answers later
GET, HEAD and conditional requests for it from memory, before any routing: no
Redis round trip, no framework on the way.

What keeps the copies exact: a follower task reads the store's stream of stored
renders (``feeds:changes``, written in the same Lua call as the documents, see
``feeds/state.py``) and drops each changed feed's entries. The cache serves only
while that follower is connected and caught up; before its first read, and from
the moment it loses the store until it has read the stream's end again, every
request takes the full path (which reads the store) and nothing is cached.

A race the per-feed epoch closes: the full path notes the feed's epoch before it
reads the store and fills the cache only if no change was seen since; so a render
landing between that read and the fill can never leave the older bytes cached.
A served copy is at most one stream read behind a render (milliseconds), as it
would be behind any CDN.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from ..feeds.conditional import not_modified

log = logging.getLogger("syndicate.api.feedcache")

BLOCK_MS = 5_000
RETRY_SECONDS = 1.0
# The follower hears from the store at least every BLOCK_MS; silence longer than this (a store gone
# or cut off, a connection hanging in retries) turns the cache off until it hears again.
QUIET_LIMIT_SECONDS = BLOCK_MS / 1000 + 2.0


@dataclass(frozen=True)
class Entry:
    feed_id: str
    etag: str
    last_modified: str
    body: bytes
    headers: list[tuple[bytes, bytes]]  # every header of a 200 but Content-Length
    headers_304: list[tuple[bytes, bytes]]


class FeedCache:
    """Path -> Entry for one application in one process; ``live`` only while its follower is caught up."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.by_feed: dict[str, set[str]] = {}
        self.epochs: dict[str, int] = {}
        self.following = False
        self.heard = 0.0  # time.monotonic() of the store's last answer to the follower
        self.task: asyncio.Task | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def live(self) -> bool:
        return self.following and time.monotonic() - self.heard < QUIET_LIMIT_SECONDS

    # --- used by the full path ------------------------------------------------

    def epoch(self, feed_id: str) -> int | None:
        """Note before reading the store; None: the cache is not live, do not fill it."""
        return self.epochs.get(feed_id, 0) if self.live else None

    def fill(self, path: str, epoch: int | None, entry: Entry) -> None:
        if epoch is None or not self.live or self.epochs.get(entry.feed_id, 0) != epoch:
            return  # not following changes, or the feed changed while the document was read
        self.entries[path] = entry
        self.by_feed.setdefault(entry.feed_id, set()).add(path)

    # --- the follower -----------------------------------------------------------

    def drop(self, feed_id: str) -> None:
        self.epochs[feed_id] = self.epochs.get(feed_id, 0) + 1
        for path in self.by_feed.pop(feed_id, ()):
            self.entries.pop(path, None)

    def clear(self) -> None:
        self.following = False
        for feed_id in list(self.by_feed) + list(self.epochs):
            self.epochs[feed_id] = self.epochs.get(feed_id, 0) + 1
        self.entries.clear()
        self.by_feed.clear()

    def ensure_following(self, client_factory, stream: str) -> None:
        """Start the follower in the running loop (once per loop; a new loop starts a new one)."""
        loop = asyncio.get_running_loop()
        if self.task is not None and self.loop is loop and not self.task.done():
            return
        self.clear()
        self.loop = loop
        self.task = loop.create_task(self._follow(client_factory, stream))

    async def _follow(self, client_factory, stream: str) -> None:
        from ..store import unavailable_errors

        cursor: str | None = None
        while True:
            try:
                client = client_factory()
                if cursor is None:
                    last = await client.xrevrange(stream, count=1)
                    cursor = last[0][0].decode() if last else "0-0"
                    self.clear()
                    self.heard, self.following = time.monotonic(), True
                answer = await client.xread({stream: cursor}, count=1000, block=BLOCK_MS)
                self.heard = time.monotonic()
                if not answer and cursor != "0-0":
                    # Quiet for a while: make sure the stream is still the one followed. Deleted or
                    # behind the cursor means the store was reset or replaced (a restore, a failover
                    # to a replica that missed writes): start over from its end.
                    last = await client.xrevrange(stream, count=1)
                    if not last or _id(last[0][0].decode()) < _id(cursor):
                        log.info("feed changes stream reset; feed cache emptied")
                        cursor = None
                        continue
                for _name, entries in answer or ():
                    for entry_id, fields in entries:
                        feed = fields.get(b"feed")
                        if feed is not None:
                            self.drop(feed.decode())
                        cursor = entry_id.decode()
            except asyncio.CancelledError:
                self.clear()
                raise
            except (*unavailable_errors(), OSError) as exc:
                if self.following or cursor is not None:
                    log.warning("feed cache off while the store is unreachable (%s); feeds are read from "
                                "the store until it is back", type(exc).__name__)
                self.clear()
                cursor = None
                await asyncio.sleep(RETRY_SECONDS)
            except Exception:  # noqa: BLE001 - never let the follower die silently with the cache live
                log.exception("feed cache follower failed; feeds are read from the store meanwhile")
                self.clear()
                cursor = None
                await asyncio.sleep(RETRY_SECONDS)


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _header(scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


class FeedFastPath:
    """ASGI middleware answering cached feed documents before routing (one cache per application)."""

    def __init__(self, app, cache: FeedCache) -> None:
        self.app = app
        self.cache = cache

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and self.cache.live:
            entry = self.cache.entries.get(scope["path"])
            if entry is not None and scope["method"] in ("GET", "HEAD") and not scope.get("query_string"):
                if not_modified(_header(scope, b"if-none-match"), _header(scope, b"if-modified-since"),
                                entry.etag, entry.last_modified):
                    await send({"type": "http.response.start", "status": 304, "headers": entry.headers_304})
                    await send({"type": "http.response.body", "body": b""})
                    return
                headers = [*entry.headers, (b"content-length", str(len(entry.body)).encode())]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else entry.body})
                return
        await self.app(scope, receive, send)
