"""The article store and the durable event log, both in Redis.

Storing an article and appending its event happen in one MULTI/EXEC guarded by
WATCH on the article key, so a concurrent writer of the same id makes us retry
instead of interleaving. The event is enqueued only after that commit; a
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
MULTI/EXEC, so from the commit of an article until each channel is done with it
the event is always in one set the reconciler reads: a message lost inside the
broker (a Redis restart between the pop and the unacked record) is re-dispatched.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import secrets
import time
from typing import Any

import redis

from . import dates
from .config import get_settings
from .errors import NotFound
from .ingest import RETRACTED, Decision, Stored, decide, digest, normalize
from .retention import note_whole
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


def _stored(meta: dict[str, str]) -> Stored | None:
    if not meta:
        return None
    return Stored(int(meta["version"]), meta["digest"], meta["event_id"], meta.get("status", "published"))


def _record_event(pipe: Any, event: dict[str, Any], article: dict[str, Any], content_digest: str) -> None:
    settings = get_settings()
    article_id = article["id"]
    retention = settings.event_retention_days * 86400
    pipe.hset(
        key("article", article_id),
        mapping={
            "json": json.dumps(article, ensure_ascii=False),
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
    pipe.set(key("event", event["id"]), json.dumps(event, ensure_ascii=False), ex=retention)
    pipe.xadd(
        key("events"),
        {"id": event["id"], "type": event["type"], "article_id": article_id, "version": article["version"]},
        maxlen=EVENT_LOG_MAXLEN,
        approximate=True,
    )
    pipe.zadd(key("events:pending"), {event["id"]: time.time()})
    note_whole(pipe, article, time.time())


def ingest(article: dict[str, Any], client: redis.Redis | None = None) -> IngestResult:
    """Store a validated article and log its event atomically; enqueue nothing."""
    client = client or get_redis()
    article = normalize(article)
    content_digest = digest(article)
    article_key = key("article", article["id"])
    with client.pipeline() as pipe:
        while True:
            try:
                pipe.watch(article_key)
                stored = _stored(pipe.hgetall(article_key))
                decision: Decision = decide(stored, article["version"], content_digest, article["status"])
                if decision.outcome != "event":
                    pipe.unwatch()
                    if decision.outcome == "duplicate":
                        confirm_replicated(client)  # a retry after a 503 answers only once replicated
                    return IngestResult(
                        decision.outcome,
                        article["id"],
                        article["version"],
                        event_id=stored.event_id if stored and decision.outcome == "duplicate" else None,
                        reason=decision.reason,
                    )
                event = make_event(decision.event_type or "", article)
                pipe.multi()
                _record_event(pipe, event, article, content_digest)
                pipe.execute()
                confirm_replicated(client)  # SYNDICATE_INGEST_REPLICAS: no 2xx before the replicas have it
                return IngestResult("event", article["id"], article["version"], event["id"], event["type"])
            except redis.WatchError:
                continue


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
    "IngestResult", "ingest", "retract", "get_article", "get_event", "mark_fanned_out", "settle",
    "owed_events", "note_redispatched", "owed_counts", "redispatch_totals", "pending_events", "recent_events", "new_event_id", "now_rfc3339", "parse_datetime",
]
