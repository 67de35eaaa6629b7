"""Article bodies are kept while something needs them; a small version record stays after.

A stored article (``article:{id}``, see events.py) holds the whole JSON the
newsroom sent, about 7 KB for a typical story. Nothing reads the body of an old
story once it has left every feed window, is staged for no edition and its
events have passed their retention; keeping it anyway makes memory grow with
the archive. ``trim_bodies`` (beat, hourly, on the ingest queue) replaces the
JSON of such stories with a *version record*: what identifies the story to a
reader, a partner or an operator (id, version, status, headline, URL, section,
dates), marked ``"bodyKept": false``, about 1.1 KB in Redis with its hash. The
hash keeps its version and digest, so a resend of the same version is still a
duplicate, an older one still stale. A retraction of such a story carries what
the record holds (event.schema.json requires no more of ``article.retracted``):
enough for a partner to take the story down by id or URL.

A story is kept whole while any of these holds:

- its last change is younger than ``SYNDICATE_EVENT_RETENTION_DAYS``;
- it is in a feed window, or among the ``SYNDICATE_BODY_MARGIN`` newer stories
  of the main feed or its section's feed just below the window (a retraction
  refills a window from there);
- it is staged for a newsletter list's next edition, or in an edition not yet sent.

Keys (under the deployment prefix):
    articles:full         zset   article id -> time of its last change, stories stored whole
    articles:full:seeded  string set once every article stored before this key existed was listed
    retention:last        hash   at, checked, trimmed, kept (the last run, for operators)

and, on a trimmed ``article:{id}``: ``trimmed_at`` and, on a story not yet retracted, ``retract_digest``
(the digest the whole story would have had once retracted, so a resent retraction stays a duplicate).
A later version of the story stores its whole JSON again and drops both.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import redis

from .config import get_settings
from .ingest import digest
from .store import get_redis, key

log = logging.getLogger("syndicate.retention")

MARKER = "bodyKept"
# What a retraction, a feed refill, the console and GET /v1/articles/{id} need of a story past its body.
KEPT_FIELDS = ("id", "version", "status", "headline", "url", "section", "datePublished", "dateModified")
BATCH = 500

# KEYS: article hash, full set; ARGV: id, version, digest, cutoff, kept json, retract digest ('' once
# retracted: its digest already is), now.
# Trims only the very version that was checked, and only while it is still past the cutoff.
_TRIM = """
local meta = redis.call('HMGET', KEYS[1], 'version', 'digest')
if meta[1] ~= ARGV[2] or meta[2] ~= ARGV[3] then return 0 end
local changed = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not changed or tonumber(changed) > tonumber(ARGV[4]) then return 0 end
-- The hash is written anew: Redis never turns a hash back into its compact encoding once a large
-- value (the body) made it a hashtable, and with hash-max-listpack-value above the record's size
-- (the embedded server's setting) the new one is a listpack of some 550 bytes instead of 1.2 KB.
local fields = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
for i = 1, #fields, 2 do
  if fields[i] ~= 'json' then redis.call('HSET', KEYS[1], fields[i], fields[i + 1]) end
end
redis.call('HSET', KEYS[1], 'json', ARGV[5], 'trimmed_at', ARGV[7])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'retract_digest', ARGV[6]) end
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""


def full_key() -> str:
    return key("articles", "full")


def is_kept_record(article: dict[str, Any]) -> bool:
    """True for a story whose body was let go (``"bodyKept": false``)."""
    return article.get(MARKER) is False


def kept_record(article: dict[str, Any]) -> dict[str, Any]:
    """What stays of a story once its body is let go (pure): its identity, not its text.

    Summary, Quick Looks, byline and images stay out: they are what made the record 3 KB, and
    nothing reads them once no feed window, edition or event needs the story.
    """
    out = {name: article[name] for name in KEPT_FIELDS if name in article}
    out[MARKER] = False
    return out


def encode_record(article: dict[str, Any]) -> str:
    """The stored form of the version record: compact JSON (every byte stays for the archive's life)."""
    return json.dumps(kept_record(article), ensure_ascii=False, separators=(",", ":"))


def note_whole(pipe: Any, article: dict[str, Any], now: float) -> None:
    """In the ingest transaction: the story is stored whole as of ``now`` (a kept record stays kept)."""
    if is_kept_record(article):
        return
    pipe.zadd(full_key(), {article["id"]: now})
    pipe.hdel(key("article", article["id"]), "trimmed_at", "retract_digest")


def _event_time(event_id: str | None) -> float:
    # evt_ + 12 hex digits of milliseconds (events.new_event_id).
    try:
        return int((event_id or "")[4:16], 16) / 1000
    except ValueError:
        return 0.0


def seed_full_set(client: redis.Redis) -> int:
    """List the articles stored whole before ``articles:full`` existed, once; returns how many."""
    flag = key("articles", "full", "seeded")
    if client.exists(flag):
        return 0
    prefix = key("article", "")
    listed = 0
    batch: list[str] = []

    def flush() -> int:
        with client.pipeline(transaction=False) as pipe:
            for name in batch:
                pipe.hmget(name, "event_id", "trimmed_at")
            metas = pipe.execute()
        found = {name[len(prefix):]: _event_time(event_id)
                 for name, (event_id, trimmed) in zip(batch, metas) if event_id and not trimmed}
        if found:
            client.zadd(full_key(), found, nx=True)
        batch.clear()
        return len(found)

    for name in client.scan_iter(match=prefix + "*", count=1000, _type="hash"):
        batch.append(name)
        if len(batch) >= BATCH:
            listed += flush()
    if batch:
        listed += flush()
    client.set(flag, f"{time.time():.3f}")
    return listed


class _Protected:
    """What needs whole bodies now: feed windows and their margins, staged and unsent stories."""

    def __init__(self, client: redis.Redis, size: int, margin: int) -> None:
        from .feeds import index as feed_index

        self.client, self.size, self.margin = client, size, margin
        self.ids: set[str] = set()
        self.sections_done: set[str] = set()
        for feed_id in feed_index.feed_ids(client):
            self.ids.update(client.zrange(feed_index.index_key(feed_id), 0, -1))
        self.ids.update(client.zrevrange(key("articles"), 0, size + margin - 1))
        for list_id in client.smembers(key("nl", "lists")):
            self.ids.update(client.hkeys(key("nl", "pending", list_id)))
        for eid in client.smembers(key("nl", "active")):
            self.ids.update(client.hkeys(key("nl", "ed", eid, "stories")))

    def covers(self, article_id: str, section: str | None) -> bool:
        if section and self.margin:
            from .feeds.model import section_feed_id

            self._add_section_margin(section_feed_id(section))
        return article_id in self.ids

    def _add_section_margin(self, feed_id: str) -> None:
        from .feeds import index as feed_index
        from .feeds.model import MAIN_FEED

        if feed_id in self.sections_done or feed_id == MAIN_FEED:
            return
        self.sections_done.add(feed_id)
        window = frozenset(self.client.zrange(feed_index.index_key(feed_id), 0, -1))
        below = feed_index.window_floor(self.client, feed_id)
        self.ids.update(a for a, _v, _s in feed_index.candidates(self.client, feed_id, below, self.margin, window))


def trim_bodies(older_than: float | None = None, only: list[str] | None = None,
                client: redis.Redis | None = None, progress: Callable[[str], None] | None = None,
                budget: float | None = None) -> dict[str, int]:
    """Trim every story no one needs whole any more (see the module docstring); returns the counts.

    ``older_than`` (seconds) defaults to the event retention; ``only`` limits the run to those
    article ids (an operator's one-off, or a test that must not touch other tests' stories).
    With ``budget`` (seconds) the run stops after the batch that exceeds it; the next run goes on
    where it stopped (trimmed stories left the candidates), so a backlog never outlasts a task's time limit.
    """
    settings = get_settings()
    client = client or get_redis()
    older_than = settings.event_retention_days * 86400 if older_than is None else older_than
    now = time.time()
    cutoff = now - older_than
    stop_at = time.monotonic() + budget if budget is not None else None
    seeded = seed_full_set(client)
    if seeded:
        log.info("retention: listed %d stories stored whole before this release", seeded)
    protected = _Protected(client, settings.feed_size, settings.body_margin)
    script = client.register_script(_TRIM)
    counts = {"checked": 0, "trimmed": 0, "kept": 0}

    def batches():
        if only is not None:
            for start in range(0, len(only), BATCH):
                yield _only_due(client, only[start:start + BATCH], cutoff)
            return
        offset = 0
        while True:
            ids = client.zrangebyscore(full_key(), "-inf", cutoff, start=offset, num=BATCH)
            if not ids:
                return
            kept_before = counts["kept"]
            yield ids
            offset += counts["kept"] - kept_before  # trimmed ones left the set; kept ones are stepped over

    for ids in batches():
        with client.pipeline(transaction=False) as pipe:
            for article_id in ids:
                pipe.hmget(key("article", article_id), "json", "version", "digest")
            metas = pipe.execute()
        for article_id, (raw, version, content_digest) in zip(ids, metas):
            counts["checked"] += 1
            if raw is None:
                client.zrem(full_key(), article_id)  # deleted meanwhile (syndicate reset)
                continue
            article = json.loads(raw)
            if protected.covers(article_id, article.get("section")):
                counts["kept"] += 1
                continue
            retracted = "" if article.get("status") == "retracted" else digest({**article, "status": "retracted"})
            done = script(keys=[key("article", article_id), full_key()],
                          args=[article_id, version, content_digest, cutoff,
                                encode_record(article), retracted, f"{now:.3f}"])
            counts["trimmed" if done else "kept"] += 1
        line = (f"retention: {counts['checked']} stories past {older_than / 86400:g} days checked, "
                f"{counts['trimmed']} trimmed, {counts['kept']} still needed whole")
        log.info("%s", line)
        if progress:
            progress(line)
        if stop_at is not None and time.monotonic() > stop_at:
            log.info("retention: stopping for this run after %.0f s; the next run goes on", budget)
            break
    client.hset(key("retention", "last"), mapping={"at": f"{now:.3f}", **counts})
    return counts


def compact_editions(older_than: float | None = None, client: redis.Redis | None = None) -> dict[str, int]:
    """Compact every edition sent more than ``older_than`` seconds ago (default
    ``SYNDICATE_NEWSLETTER_COMPACT_AFTER_HOURS``): counts and problem recipients stay, the rest go."""
    from .newsletter import editions

    client = client or get_redis()
    if older_than is None:
        older_than = get_settings().newsletter_compact_after_hours * 3600
    out = {"editions": 0, "records": 0}
    for eid in editions.finished_editions(older_than, client):
        dropped = editions.compact(eid, client)
        out["editions"] += 1
        out["records"] += dropped
        log.info("retention: edition %s compacted (%d recipient records dropped)", eid, dropped)
    return out


def _only_due(client: redis.Redis, ids: list[str], cutoff: float) -> list[str]:
    with client.pipeline(transaction=False) as pipe:
        for article_id in ids:
            pipe.zscore(full_key(), article_id)
        scores = pipe.execute()
    return [a for a, score in zip(ids, scores) if score is not None and score <= cutoff]


__all__ = ["MARKER", "compact_editions", "encode_record", "is_kept_record", "kept_record", "note_whole", "seed_full_set", "trim_bodies"]
