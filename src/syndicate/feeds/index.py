"""Which articles each feed holds: per-feed Redis sorted sets, capped at the feed window.

Keys (under the deployment prefix):
    feeds:sections          hash  slug -> section name as first seen (the section feed registry)
    feeds:index:{feed_id}   zset  article id -> datePublished (epoch), newest ``size`` only
    feeds:removed           hash  feed id -> epoch of its latest removal (dates the feed after a retraction)

The article store is the truth: an event only says *which* article to look at,
and ``sync_article`` puts that article where its current stored state says it
belongs (its section's feed and the main feed, or nowhere once retracted). That
makes a redelivered or out-of-order event harmless. The Lua script re-checks the
stored version, so a sync computed from a state that changed meanwhile retries
instead of undoing the newer sync.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import redis

from ..events import parse_datetime
from ..store import key
from .model import MAIN_FEED, section_feed_id
from .text import slugify

# KEYS: article hash, removed hash, main index, own section index, other section indexes...
# ARGV: article id, version read, score, size, removal time, own section index present (1/0)
# Returns -1 if the article changed since it was read, else a list of changed KEYS positions
# (positive: still or newly in the window; negative: removed, the window may need a refill).
_SYNC = """
local id, version, score, size, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local has_own = ARGV[6] == '1'
local meta = redis.call('HMGET', KEYS[1], 'version', 'status')
if meta[1] ~= version then return -1 end
local live = meta[2] ~= 'retracted'
local out = {}
for i = 3, #KEYS do
  local k = KEYS[i]
  local had = redis.call('ZSCORE', k, id)
  local wanted = live and (i == 3 or (i == 4 and has_own))
  if wanted then
    redis.call('ZADD', k, score, id)
    local n = redis.call('ZCARD', k)
    if n > size then redis.call('ZREMRANGEBYRANK', k, 0, n - size - 1) end
    if had or redis.call('ZSCORE', k, id) then table.insert(out, i) end
  elseif had then
    redis.call('ZREM', k, id)
    local fid = string.sub(k, string.len(ARGV[7]) + 1)
    local prev = tonumber(redis.call('HGET', KEYS[2], fid) or '0')
    if now > prev then redis.call('HSET', KEYS[2], fid, now) end
    table.insert(out, -i)
  end
end
return out
"""

# KEYS: index; ARGV: size, then (article key, id, version, score) quadruples.
# Adds only candidates whose stored version is unchanged and not retracted.
_REFILL = """
local size = tonumber(ARGV[1])
for i = 2, #ARGV, 4 do
  local meta = redis.call('HMGET', ARGV[i], 'version', 'status')
  if meta[1] == ARGV[i + 2] and meta[2] ~= 'retracted' then
    redis.call('ZADD', KEYS[1], ARGV[i + 3], ARGV[i + 1])
  end
end
local n = redis.call('ZCARD', KEYS[1])
if n > size then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - size - 1) end
return redis.call('ZCARD', KEYS[1])
"""

# KEYS: index; ARGV: size, article key prefix. Flat (id, json) pairs of the window, newest first,
# leaving out ids whose article is gone.
_WINDOW = """
local out = {}
for _, id in ipairs(redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)) do
  local raw = redis.call('HGET', ARGV[2] .. id, 'json')
  if raw then
    out[#out + 1] = id
    out[#out + 1] = raw
  end
end
return out
"""


def index_key(feed_id: str) -> str:
    return key("feeds", "index", feed_id)


def sections(client: redis.Redis) -> dict[str, str]:
    """slug -> section name, every section that ever had a story."""
    return client.hgetall(key("feeds", "sections"))


def feed_ids(client: redis.Redis) -> list[str]:
    return [MAIN_FEED] + [f"sections/{slug}" for slug in sorted(sections(client))]


def section_name(client: redis.Redis, feed_id: str) -> str | None:
    if feed_id == MAIN_FEED:
        return None
    return client.hget(key("feeds", "sections"), feed_id.split("/", 1)[1])


def _stored(client: redis.Redis, article_id: str) -> tuple[dict[str, Any] | None, str | None]:
    raw, version = client.hmget(key("article", article_id), "json", "version")
    return (json.loads(raw) if raw else None), version


def sync_article(client: redis.Redis, article_id: str, size: int, now: float | None = None) -> set[str]:
    """Put one article where its stored state says; return the feed ids whose documents change."""
    script = client.register_script(_SYNC)
    while True:
        article, version = _stored(client, article_id)
        if article is None:
            return set()
        own = section_feed_id(article["section"])
        client.hsetnx(key("feeds", "sections"), slugify(article["section"]), article["section"])
        others = [fid for fid in feed_ids(client)[1:] if fid != own]
        ids = [MAIN_FEED, own, *others]
        keys = [key("article", article_id), key("feeds", "removed"), *(index_key(f) for f in ids)]
        score = parse_datetime(article["datePublished"]).timestamp()
        result = script(keys=keys, args=[article_id, version, score, size, now or time.time(), 1,
                                         index_key("")])
        if result == -1:
            continue  # the article changed under us: read it again
        changed = {ids[abs(pos) - 3] for pos in result}
        for pos in result:
            if pos < 0:
                refill(client, ids[-pos - 3], size)
        return changed


def _section_of(raw: str) -> str | None:
    """The section of a stored article, or None when its record cannot be read (a bad story is
    isolated where it is rendered; it must not stop a refill or a rebuild of every other one)."""
    try:
        section = json.loads(raw)["section"]
    except (ValueError, KeyError, TypeError):
        return None
    return section if isinstance(section, str) else None


def _candidates(client: redis.Redis, feed_id: str, below: float | str, want: int,
                skip: frozenset[str] = frozenset(), page: int = 200):
    """Live articles of ``feed_id`` published at or before ``below``, newest first, from the store."""
    slug = None if feed_id == MAIN_FEED else feed_id.split("/", 1)[1]
    start = 0
    while want > 0:
        rows = client.zrevrangebyscore(key("articles"), below, "-inf", start=start, num=page, withscores=True)
        if not rows:
            return
        start += len(rows)
        with client.pipeline(transaction=False) as pipe:
            for article_id, _ in rows:
                pipe.hmget(key("article", article_id), "json", "version")
            metas = pipe.execute()
        for (article_id, score), (raw, version) in zip(rows, metas):
            if not raw or article_id in skip:
                continue
            if slug is not None and slugify(_section_of(raw) or "") != slug:
                continue  # another section's story, or one that cannot be read
            want -= 1
            yield article_id, version, score


def candidates(client: redis.Redis, feed_id: str, below: float | str, want: int,
               skip: frozenset[str] = frozenset()) -> list[tuple[str, str, float]]:
    """(id, version, datePublished) of the ``want`` live stories of ``feed_id`` a refill would take next
    from at or below ``below``, newest first (the retention keeps their bodies)."""
    # islice: _candidates finishes the page it read, and may yield more than asked for.
    return list(itertools.islice(_candidates(client, feed_id, below, want, skip), want))


def window_floor(client: redis.Redis, feed_id: str) -> float | str:
    """The datePublished of the oldest story in the window ("+inf" for an empty window)."""
    oldest = client.zrange(index_key(feed_id), 0, 0, withscores=True)
    return oldest[0][1] if oldest else "+inf"


def refill(client: redis.Redis, feed_id: str, size: int) -> int:
    """Top the window back up from older stories after a removal; returns the new item count."""
    idx = index_key(feed_id)
    have = client.zcard(idx)
    if have >= size:
        return have
    members = client.zrange(idx, 0, -1, withscores=True)
    below = members[0][1] if members else "+inf"
    args: list[Any] = [size]
    present = frozenset(m for m, _ in members)
    for article_id, version, score in _candidates(client, feed_id, below, size - have, present):
        args += [key("article", article_id), article_id, version, score]
    return client.register_script(_REFILL)(keys=[idx], args=args)


def rebuild_index(client: redis.Redis, feed_id: str, size: int) -> int:
    """Rebuild one feed's window from the article store (``syndicate feeds rebuild``)."""
    idx = index_key(feed_id)
    args: list[Any] = [size]
    for article_id, version, score in _candidates(client, feed_id, "+inf", size):
        args += [key("article", article_id), article_id, version, score]
    live = {a for a in args[2::4]}
    with client.pipeline() as pipe:
        # Drop what the store no longer places here, then add what it does.
        for stale in set(client.zrange(idx, 0, -1)) - live:
            pipe.zrem(idx, stale)
        pipe.execute()
    return client.register_script(_REFILL)(keys=[idx], args=args)


def discover_sections(client: redis.Redis) -> int:
    """Register the section of every live stored article (a rebuild after feed state was lost)."""
    found = 0
    ids = client.zrange(key("articles"), 0, -1)
    for start in range(0, len(ids), 500):
        with client.pipeline(transaction=False) as pipe:
            for article_id in ids[start:start + 500]:
                pipe.hget(key("article", article_id), "json")
            for raw in pipe.execute():
                section = _section_of(raw) if raw else None
                if section:
                    found += client.hsetnx(key("feeds", "sections"), slugify(section), section)
    return found


def window_entries(client: redis.Redis, feed_id: str, size: int) -> list[tuple[str, str]]:
    """(article id, stored JSON) of the articles in a feed's window, newest first.

    One script call: every render reads its whole window, and one round trip with
    one reply costs a fraction of a pipeline of ``size`` reads.
    """
    flat = client.register_script(_WINDOW)(keys=[index_key(feed_id)], args=[size, key("article", "")])
    return list(zip(flat[0::2], flat[1::2]))


def removed_at(client: redis.Redis, feed_id: str) -> float | None:
    value = client.hget(key("feeds", "removed"), feed_id)
    return float(value) if value else None
