"""The article store and the durable event log, both in Redis.

Storing an article and appending its event happen in one atomic step: a Lua
script for ingest (one round trip), a MULTI/EXEC guarded by WATCH on the article
key for a retraction; either way a concurrent writer of the same id never
interleaves. The event is enqueued only after that commit; a
reconciler re-enqueues events still in the ``pending`` set after a grace period,
so a broker failure between the two loses nothing.

Keys (under the deployment prefix):
    article:{id}        hash   json, version, digest, event_id, status, published_ts
    articles            zset   article id -> datePublished (epoch), live articles only
    event:{event_id}    string the event record (JSON, with the article snapshot), TTL = retention
    events              stream the ordered log (event id, type, article id, version), capped
    events:pending      zset   event id -> time logged, until fan-out took it
    events:owed:{channel}  zset   event id -> time fanned out (or re-dispatched), until the
                        channel's task recorded its receipt (or its dead letter)
    events:redispatched hash   channel -> channel tasks the reconciler sent again, ever
    articles:full       zset   article id -> time of its last change, while stored whole (retention.py
                        trims the body of a story nothing needs any more)

Fan-out moves an event from ``pending`` to every channel's ``owed`` set in one
script, so from the commit of an article until each channel is done with it
the event is always in one set the reconciler reads: a message lost inside the
broker (a Redis restart between the pop and the unacked record) is re-dispatched.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import secrets
import time
from typing import Any

import redis

from . import dates
from .config import get_settings
from .errors import NotFound
from .ingest import PUBLISHED, RETRACTED, UPDATED, Decision, Stored, canonical_json, decide, digest, digest_of, normalize
from .retention import full_key, is_kept_record, note_whole
from .store import confirm_replicated, get_redis, key

EVENT_LOG_MAXLEN = 100_000


def new_event_id() -> str:
    """Time-ordered, unique: ``evt_`` + 12 hex digits of milliseconds + 10 random hex digits."""
    return f"evt_{int(time.time() * 1000):012x}{secrets.token_hex(5)}"


def now_rfc3339() -> str:
    return dates.format_utc(dt.datetime.now(dt.timezone.utc))


def parse_datetime(value: str) -> dt.datetime:
    return dates.parse(value)


@dataclasses.dataclass(frozen=True)
class IngestResult:
    outcome: str  # event | duplicate | stale | conflict
    article_id: str
    version: int
    event_id: str | None = None
    event_type: str | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "type": self.event_type,
            "article_id": self.article_id,
            "version": self.version,
            "outcome": self.outcome,
        }


def _record_event(pipe: Any, event: dict[str, Any], article: dict[str, Any], content_digest: str) -> None:
    settings = get_settings()
    article_id = article["id"]
    retention = settings.event_retention_days * 86400
    article_json = canonical_json(article)
    pipe.hset(
        key("article", article_id),
        mapping={
            "json": article_json,
            "version": article["version"],
            "digest": content_digest,
            "event_id": event["id"],
            "status": article["status"],
        },
    )
    if article["status"] == "retracted":
        pipe.zrem(key("articles"), article_id)
    else:
        pipe.zadd(key("articles"), {article_id: parse_datetime(article["datePublished"]).timestamp()})
    head, tail = _event_frame(event["id"], event["timestamp"], article)
    pipe.set(key("event", event["id"]), f'{head}"{event["type"]}"{tail}{article_json}}}', ex=retention)
    pipe.xadd(
        key("events"),
        {"id": event["id"], "type": event["type"], "article_id": article_id, "version": article["version"]},
        maxlen=EVENT_LOG_MAXLEN,
        approximate=True,
    )
    pipe.zadd(key("events:pending"), {event["id"]: time.time()})
    note_whole(pipe, article, time.time())


# One round trip stores an article and logs its event atomically (a Lua script runs alone on the server,
# so a concurrent writer of the same id cannot interleave), which a WATCH + HGETALL + MULTI/EXEC took three.
# It writes only what ``decide`` calls an event: no stored version, or a higher one; the event type follows
# decide's rule too, and ``ingest`` checks every answer against decide itself. The event record is
# ARGV[8] .. type .. ARGV[9] .. the article JSON .. '}', so the 7 KB article is serialized and sent once.
# What it writes mirrors ``_record_event`` (and, for a whole story, retention.note_whole).
# KEYS: article hash, articles zset, event record, event log, pending zset, whole-story zset.
# ARGV: 1 id, 2 version, 3 digest, 4 status, 5 article json, 6 datePublished score ('' for a retraction),
#       7 event id, 8 event record up to its type, 9 the record from its type to the article,
#       10 retention (s), 11 log maxlen, 12 now, 13 '1' when the story is whole,
#       14 type when nothing is stored, 15 type over a lower version.
# Returns {1 when written, event type or '', stored version, digest, event id, status} (as it was before).
_INGEST = """
local meta = redis.call('HMGET', KEYS[1], 'version', 'digest', 'event_id', 'status')
local event_type = ARGV[14]
if meta[1] then
  if tonumber(ARGV[2]) <= tonumber(meta[1]) then
    return {0, '', meta[1], meta[2], meta[3], meta[4]}
  end
  event_type = ARGV[15]
end
redis.call('HSET', KEYS[1], 'json', ARGV[5], 'version', ARGV[2], 'digest', ARGV[3], 'event_id', ARGV[7],
           'status', ARGV[4])
if ARGV[6] == '' then
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
end
redis.call('SET', KEYS[3], ARGV[8] .. '"' .. event_type .. '"' .. ARGV[9] .. ARGV[5] .. '}', 'EX', ARGV[10])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[11], '*', 'id', ARGV[7], 'type', event_type,
           'article_id', ARGV[1], 'version', ARGV[2])
redis.call('ZADD', KEYS[5], ARGV[12], ARGV[7])
if ARGV[13] == '1' then
  redis.call('ZADD', KEYS[6], ARGV[12], ARGV[1])
  if meta[1] then redis.call('HDEL', KEYS[1], 'trimmed_at', 'retract_digest') end
end
return {1, event_type, meta[1], meta[2], meta[3], meta[4]}
"""


@functools.lru_cache(maxsize=8)
def _ingest_script(client: redis.Redis) -> Any:
    return client.register_script(_INGEST)


def _event_frame(event_id: str, timestamp: str, article: dict[str, Any]) -> tuple[str, str]:
    """The event record around its type and article: ``head + '"' + type + '"' + tail + article JSON + '}'``
    is the record ``make_event`` builds, its article in the canonical JSON the store keeps."""
    rest = json.dumps({"timestamp": timestamp, "article_id": article["id"], "version": article["version"],
                       "section": article["section"]}, ensure_ascii=False)
    return f'{{"id": {json.dumps(event_id)}, "type": ', f', {rest[1:-1]}, "article": '


def _stored(reply: list[Any]) -> Stored | None:
    version, content_digest, event_id, status = reply[2:6]
    if version is None:
        return None
    return Stored(int(version), content_digest, event_id, status or "published")


def ingest(article: dict[str, Any], client: redis.Redis | None = None) -> IngestResult:
    """Store a validated article and log its event atomically; enqueue nothing."""
    client = client or get_redis()
    article = normalize(article)
    # The canonical JSON is both what is stored and what the digest is of: the article is encoded once,
    # to UTF-8 once too (redis-py sends bytes as they are).
    article_json = canonical_json(article).encode("utf-8")
    content_digest = digest_of(article_json)
    article_id, version, status = article["id"], article["version"], article["status"]
    event_id, now = new_event_id(), time.time()
    head, tail = _event_frame(event_id, now_rfc3339(), article)
    retracted = status == "retracted"
    reply = _ingest_script(client)(
        keys=[key("article", article_id), key("articles"), key("event", event_id), key("events"),
              key("events:pending"), full_key()],
        args=[article_id, version, content_digest, status, article_json,
              "" if retracted else parse_datetime(article["datePublished"]).timestamp(),
              event_id, head, tail, get_settings().event_retention_days * 86400,
              EVENT_LOG_MAXLEN, now, "0" if is_kept_record(article) else "1",
              RETRACTED if retracted else PUBLISHED, RETRACTED if retracted else UPDATED],
        client=client,
    )
    written, event_type = int(reply[0]), reply[1]
    stored = _stored(reply)
    decision: Decision = decide(stored, version, content_digest, status)
    if (decision.outcome == "event") != bool(written) or (written and decision.event_type != event_type):
        raise RuntimeError(f"the ingest script and decide() disagree on {article_id!r} v{version}: "
                           f"{decision} vs written={written} {event_type!r}")
    if decision.outcome == "duplicate":
        confirm_replicated(client)  # a retry after a 503 answers only once replicated
    if decision.outcome != "event":
        return IngestResult(decision.outcome, article_id, version,
                            event_id=stored.event_id if stored and decision.outcome == "duplicate" else None,
                            reason=decision.reason)
    confirm_replicated(client)  # SYNDICATE_INGEST_REPLICAS: no 2xx before the replicas have it
    return IngestResult("event", article_id, version, event_id, event_type)


def retract(article_id: str, client: redis.Redis | None = None) -> IngestResult:
    """Retract a stored article (``DELETE /v1/articles/{id}``); retracting twice answers the first event."""
    client = client or get_redis()
    article_key = key("article", article_id)
    with client.pipeline() as pipe:
        while True:
            try:
                pipe.watch(article_key)
                meta = pipe.hgetall(article_key)
                if not meta:
                    pipe.unwatch()
                    raise NotFound(f"no article with id {article_id!r}; check the id or publish it first")
                article = json.loads(meta["json"])
                if meta.get("status") == "retracted":
                    pipe.unwatch()
                    confirm_replicated(client)
                    return IngestResult("duplicate", article_id, article["version"], meta["event_id"], RETRACTED)
                article = {**article, "status": "retracted"}
                event = make_event(RETRACTED, article)
                # A story whose body was let go: the digest its whole retracted version would have had,
                # so resending that retraction is still a duplicate.
                retracted_digest = meta.get("retract_digest") or digest(article)
                pipe.multi()
                _record_event(pipe, event, article, retracted_digest)
                pipe.execute()
                confirm_replicated(client)
                return IngestResult("event", article_id, article["version"], event["id"], RETRACTED)
            except redis.WatchError:
                continue


def make_event(event_type: str, article: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": new_event_id(),
        "type": event_type,
        "timestamp": now_rfc3339(),
        "article_id": article["id"],
        "version": article["version"],
        "section": article["section"],
        "article": article,
    }


def get_article(article_id: str, client: redis.Redis | None = None) -> dict[str, Any] | None:
    raw = (client or get_redis()).hget(key("article", article_id), "json")
    return json.loads(raw) if raw else None


def get_event(event_id: str, client: redis.Redis | None = None) -> dict[str, Any] | None:
    """The logged event with its article snapshot, or None once retention dropped it."""
    raw = (client or get_redis()).get(key("event", event_id))
    return json.loads(raw) if raw else None


def owed_key(channel: str) -> str:
    return key("events", "owed", channel)


def mark_fanned_out(event_id: str, channels: tuple[str, ...] = (), client: redis.Redis | None = None) -> None:
    """The event leaves ``pending`` and each of ``channels`` owes a receipt for it, in one step."""
    now = time.time()
    with (client or get_redis()).pipeline(transaction=True) as pipe:
        pipe.zrem(key("events:pending"), event_id)
        for channel in channels:
            pipe.zadd(owed_key(channel), {event_id: now})
        pipe.execute()


# KEYS: event record, pending zset, the fan-out's receipts list, then one owed zset per channel.
# ARGV: event id, now, the receipt, receipts kept. Returns 0, with nothing owed, when the record is gone.
_FAN_OUT = """
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 4, #KEYS do redis.call('ZADD', KEYS[i], ARGV[2], ARGV[1]) end
redis.call('LPUSH', KEYS[3], ARGV[3])
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[4]) - 1)
return 1
"""


@functools.lru_cache(maxsize=8)
def _fan_out_script(client: redis.Redis) -> Any:
    return client.register_script(_FAN_OUT)


def fan_out(event_id: str, channels: tuple[str, ...], receipts: tuple[str, str, int],
            client: redis.Redis | None = None) -> bool:
    """In one step: the event leaves ``pending``, each of ``channels`` owes a receipt for it, and
    ``receipts`` (list key, receipt, how many kept) logs that the fan-out handled it.

    False when retention dropped the record (or it never existed): it leaves ``pending`` and
    nothing is owed. The record is not read: each channel reads it, and dead-letters one that
    is not readable JSON (the fan-out would only learn the same, at the cost of the 15 KB).
    """
    client = client or get_redis()
    receipts_key, receipt, kept = receipts
    done = _fan_out_script(client)(
        keys=[key("event", event_id), key("events:pending"), receipts_key, *(owed_key(c) for c in channels)],
        args=[event_id, time.time(), receipt, kept], client=client)
    return bool(done)


def settle(channel: str, event_id: str, client: redis.Redis | Any | None = None) -> None:
    """``channel`` is done with the event (a receipt, or a dead letter); ``client`` may be a pipeline."""
    (client or get_redis()).zrem(owed_key(channel), event_id)


def _older_than(zset: str, older_than: float, only: list[str] | None, limit: int, client: redis.Redis) -> list[str]:
    ceiling = time.time() - older_than
    if only is None:
        return client.zrangebyscore(zset, "-inf", ceiling, start=0, num=limit)
    # Scoped to given events (tests, an operator's one-off): a pipeline of ZSCOREs works on every Redis version.
    with client.pipeline(transaction=False) as pipe:
        for event_id in only:
            pipe.zscore(zset, event_id)
        scores = pipe.execute()
    return [e for e, score in zip(only, scores) if score is not None and score <= ceiling][:limit]


def pending_events(older_than: float, client: redis.Redis | None = None, limit: int = 1000,
                   only: list[str] | None = None) -> list[str]:
    """Event ids logged more than ``older_than`` seconds ago and not yet fanned out."""
    return _older_than(key("events:pending"), older_than, only, limit, client or get_redis())


def owed_events(channel: str, older_than: float, limit: int = 1000, only: list[str] | None = None,
                client: redis.Redis | None = None) -> list[str]:
    """Event ids handed to ``channel`` more than ``older_than`` seconds ago that it has no receipt for."""
    return _older_than(owed_key(channel), older_than, only, limit, client or get_redis())


def note_redispatched(channel: str, event_ids: list[str], client: redis.Redis | None = None) -> None:
    """Restart the grace of re-dispatched events and count them.

    ``XX`` only touches events still owed, so a receipt that arrived meanwhile is not undone;
    restarting the grace keeps a long queue from being re-dispatched on every reconciler run.
    """
    if not event_ids:
        return
    now = time.time()
    with (client or get_redis()).pipeline(transaction=True) as pipe:
        pipe.zadd(owed_key(channel), {event_id: now for event_id in event_ids}, xx=True)
        pipe.hincrby(key("events:redispatched"), channel, len(event_ids))
        pipe.execute()


def owed_counts(channels: tuple[str, ...], client: redis.Redis | None = None) -> dict[str, int]:
    """Events each channel has not yet recorded a receipt for."""
    with (client or get_redis()).pipeline(transaction=False) as pipe:
        for channel in channels:
            pipe.zcard(owed_key(channel))
        return dict(zip(channels, pipe.execute()))


def redispatch_totals(client: redis.Redis | None = None) -> dict[str, int]:
    """Channel tasks the reconciler sent again, per channel, ever."""
    return {k: int(v) for k, v in (client or get_redis()).hgetall(key("events:redispatched")).items()}


def recent_events(count: int = 50, client: redis.Redis | None = None) -> list[dict[str, str]]:
    client = client or get_redis()
    return [fields for _id, fields in client.xrevrange(key("events"), count=count)]


__all__ = [
    "IngestResult", "ingest", "retract", "get_article", "get_event", "fan_out", "mark_fanned_out", "settle",
    "owed_events", "note_redispatched", "owed_counts", "redispatch_totals", "pending_events", "recent_events", "new_event_id", "now_rfc3339", "parse_datetime",
]
