"""``syndicate feeds mirror DIR``: keep a folder of feed files identical to the stored documents.

One mirror runs on each web host beside nginx (or a CDN origin), so the workers
that render feeds need no disk shared with the web hosts. It reads only the
store:

- every stored render appends ``{feed, gen}`` to the stream ``feeds:changes``
  in the same Lua call that stores the documents (see ``state.store``), so a
  render is never stored without its change entry;
- at start, and after any gap (a lost connection, or the stream trimmed past
  the last entry read), the mirror writes every feed from the stored documents;
- in between it blocks on the stream and rewrites only the feeds named there.

Each file is replaced atomically (``static.write_atomic``: temporary file,
fsync, rename), and a file whose bytes did not change is not rewritten, so a
full pass over an unchanged folder costs reads only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from ..store import get_redis, unavailable_errors
from . import index, state, static
from .state import changes_key
from .model import FORMATS, MAIN_FEED

log = logging.getLogger("syndicate.feeds.mirror")

BLOCK_MS = 2_000
BATCH = 500
RETRY_MAX_SECONDS = 30.0


def _ident(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def sync_feed(raw: redis.Redis, feed_id: str, directory: Path) -> list[str]:
    """Write ``feed_id``'s stored documents under ``directory``; returns the files that changed."""
    bodies = state.read_bodies(raw, feed_id, list(FORMATS))
    files = {f"{feed_id}.{FORMATS[fmt][0]}": body for fmt, body in bodies.items() if body is not None}
    return static.write_documents(directory, files) if files else []


def sync_all(raw: redis.Redis, directory: Path) -> tuple[int, int]:
    """Write every feed; returns (feeds, files changed)."""
    client = get_redis()
    feed_ids = index.feed_ids(client)
    changed = 0
    for feed_id in feed_ids:
        changed += len(sync_feed(raw, feed_id, directory))
    return len(feed_ids), changed


@dataclass
class Mirror:
    """Follows the store's feed changes into ``directory`` until ``stop`` is set."""

    directory: Path
    stop: threading.Event = field(default_factory=threading.Event)
    on_sync: Callable[[str], None] | None = None  # progress lines for the CLI
    cursor: str | None = None  # the last change entry applied; None: a full pass is due

    def _say(self, line: str) -> None:
        log.info("%s", line)
        if self.on_sync:
            self.on_sync(line)

    def full_pass(self, raw: redis.Redis) -> None:
        # Read the stream's end first: a render stored during the pass is then read again from the
        # stream afterwards, never missed between the pass and the first read.
        last = raw.xrevrange(changes_key(), count=1)
        cursor = _ident(last[0][0]) if last else "0-0"
        started = time.monotonic()
        feeds, changed = sync_all(raw, self.directory)
        self.cursor = cursor
        self._say(f"in sync: {feeds} feeds under {self.directory} ({changed} files written, "
                  f"{time.monotonic() - started:.2f} s); following changes")

    def _trimmed_past_cursor(self, raw: redis.Redis) -> bool:
        if self.cursor in (None, "0-0"):
            return False
        oldest = raw.xrange(changes_key(), count=1)
        return bool(oldest) and _id_tuple(_ident(oldest[0][0])) > _id_tuple(self.cursor)

    def step(self, raw: redis.Redis, block_ms: int = BLOCK_MS) -> int:
        """One round: a full pass if due, else apply the next batch of changes; returns files written."""
        if self.cursor is None:
            self.full_pass(raw)
            return 0
        answer = raw.xread({changes_key(): self.cursor}, count=BATCH, block=block_ms)
        if not answer:
            return 0
        entries = answer[0][1]
        if self._trimmed_past_cursor(raw):
            self._say("changes were trimmed past the last one applied; writing every feed again")
            self.cursor = None
            return 0
        feed_ids = list(dict.fromkeys(_ident(fields.get(b"feed") or fields.get("feed") or MAIN_FEED)
                                      for _, fields in entries))
        written = sum(len(sync_feed(raw, feed_id, self.directory)) for feed_id in feed_ids)
        self.cursor = _ident(entries[-1][0])
        if written:
            log.info("mirrored %d files of %s", written, ", ".join(feed_ids))
        return written

    def run(self) -> None:
        """Follow changes until ``stop`` is set; a store outage is waited out, then a full pass."""
        delay = 1.0
        down_since: float | None = None
        while not self.stop.is_set():
            try:
                raw = get_redis(decode=False)
                self.step(raw)
                if down_since is not None:
                    self._say(f"working again after {time.monotonic() - down_since:.1f} s")
                    down_since, delay = None, 1.0
            except (*unavailable_errors(), OSError) as exc:
                if down_since is None:
                    down_since = time.monotonic()
                    what = "store unreachable" if isinstance(exc, unavailable_errors()) else \
                        f"cannot write under {self.directory}"
                    self._say(f"{what} ({type(exc).__name__}: {exc}); retrying, then writing every feed again")
                self.cursor = None  # whatever changed meanwhile is caught up by the full pass
                self.stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)


def mirror_once(directory: Path) -> tuple[int, int]:
    """One full pass (``syndicate feeds mirror --once``)."""
    return sync_all(get_redis(decode=False), directory)
