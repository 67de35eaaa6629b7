"""Delivery records, their attempt log and the durable retry schedule, in Redis.

One delivery per (event, partner); its id is derived from both, so a
redelivered event finds the delivery already there and creates nothing. The
id is also the ``webhook-id`` header, stable across attempts.

Keys (under the deployment prefix):
    webhooks:delivery:{id}               hash  the delivery: partner, event, body, status, counters
    webhooks:delivery:{id}:attempts      list  one JSON record per attempt (oldest first)
    webhooks:deliveries                  zset  id -> created_at (the log, newest last)
    webhooks:partner-deliveries:{name}   zset  id -> created_at, per partner
    webhooks:event-deliveries:{event}    set   ids of one event's deliveries
    webhooks:deliveries:failed           zset  id -> failed_at (the dead letters)
    webhooks:schedule                    zset  id -> when someone must next look at it

A delivery is ``pending``, ``succeeded``, ``failed``, or ``skipped``: created
while its partner was disabled, never attempted, waiting for ``recover``.

The schedule is the only timer. A delivery sits in it from creation until it
succeeds or fails for good; its score is the next retry time, or, while an
attempt runs, the end of that attempt's lease, so a delivery whose worker died
is picked up again by the drain instead of being lost. Records expire after the
retention (SYNDICATE_DELIVERY_RETENTION_DAYS); ``prune`` trims the indexes.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any

import redis
from redis.commands.core import Script

from ..store import get_redis, key

STATUSES = ("pending", "succeeded", "failed", "skipped")
ATTEMPTS_KEPT = 100

_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[4])
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1]) end
if ARGV[5] == '1' then
  redis.call('SADD', KEYS[5], ARGV[1])
  redis.call('EXPIRE', KEYS[5], ARGV[4])
end
return 1
"""

# Start an attempt: only a pending delivery whose previous lease ran out. Answers the
# delivery and its partner's record too (KEYS[3]), saving the attempt two round trips.
_CLAIM = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then redis.call('ZREM', KEYS[2], ARGV[1]) return {'missing'} end
if status ~= 'pending' then redis.call('ZREM', KEYS[2], ARGV[1]) return {status} end
local lease = tonumber(redis.call('HGET', KEYS[1], 'lease_until') or '0')
if lease > tonumber(ARGV[2]) then return {'busy'} end
redis.call('HSET', KEYS[1], 'lease_until', ARGV[3], 'lease_token', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return {'ok', redis.call('HGETALL', KEYS[1]), redis.call('GET', KEYS[3])}
"""

# Record an attempt and the delivery's new state, atomically (what a MULTI/EXEC of the same
# commands did, in one command instead of a dozen).
# KEYS: delivery, attempts, schedule, failed, partner health
# ARGV: id, ttl, now, status, next_at ('' for none), attempt JSON ('' for none), '1' when the
#       attempt succeeded (the failure clock stops), then the delivery's field/value pairs
_FINISH = """
local id, ttl, now, status, next_at = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if ARGV[7] == '1' then
  redis.call('HDEL', KEYS[5], 'failing_since')
  redis.call('HSET', KEYS[5], 'last_success_at', now)
end
if ARGV[6] ~= '' then
  redis.call('RPUSH', KEYS[2], ARGV[6])
  redis.call('LTRIM', KEYS[2], -%d, -1)
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('HINCRBY', KEYS[1], 'attempts', 1)
  redis.call('HINCRBY', KEYS[1], 'round_attempts', 1)
end
redis.call('HSET', KEYS[1], unpack(ARGV, 8))
redis.call('EXPIRE', KEYS[1], ttl)
if status == 'pending' and next_at ~= '' then
  redis.call('ZADD', KEYS[3], next_at, id)
else
  redis.call('ZREM', KEYS[3], id)
end
if status == 'failed' then
  redis.call('ZADD', KEYS[4], now, id)
else
  redis.call('ZREM', KEYS[4], id)
end
return 1
""" % ATTEMPTS_KEPT

# Drop a schedule entry whose delivery is settled or expired (a pending one stays).
_DISCARD = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'pending' then return 0 end
return redis.call('ZREM', KEYS[2], ARGV[1])
"""

# Take what is due and push it one lease ahead, so the next drain does not take it again.
_DRAIN = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[2], id) end
return ids
"""


# Built once: registering a script per call hashes its text every time. Called with the client.
_SCRIPTS = {name: Script(None, text.encode("utf-8"))  # type: ignore[arg-type]
            for name, text in (("create", _CREATE), ("claim", _CLAIM), ("finish", _FINISH),
                               ("discard", _DISCARD), ("drain", _DRAIN))}


def delivery_id(event_id: str, partner: str) -> str:
    digest = hashlib.sha256(f"{event_id}\x00{partner}".encode("utf-8")).hexdigest()[:26]
    return f"msg_{digest}"


def new_test_id() -> str:
    return f"msg_test_{secrets.token_hex(10)}"


def _dkey(delivery: str) -> str:
    return key("webhooks", "delivery", delivery)


def _akey(delivery: str) -> str:
    return key("webhooks", "delivery", delivery, "attempts")


SCHEDULE = ("webhooks", "schedule")
FAILED = ("webhooks", "deliveries", "failed")
INDEX = ("webhooks", "deliveries")


def create(entries: list[dict[str, Any]], first_due: float, ttl: int,
           client: redis.Redis | None = None) -> list[str]:
    """Store new deliveries (id, partner, event_id, type, body...) unless they exist; return the ids created.

    An entry may carry ``status="skipped"``: it is stored but not scheduled."""
    client = client or get_redis()
    script = _SCRIPTS["create"]
    now = time.time()
    with client.pipeline(transaction=False) as pipe:
        for entry in entries:
            # A skipped delivery (its partner is disabled) waits for `recover`, not for the schedule.
            due: float | str = first_due if entry.get("status", "pending") == "pending" else ""
            fields = {"status": "pending", "attempts": 0, "round_attempts": 0, "created_at": now,
                      "updated_at": now, "next_attempt_at": due, **entry}
            flat: list[Any] = []
            for name, value in fields.items():
                flat += [name, value]
            event = entry.get("event_id") or ""
            # A ping has no event: indexing it under one shared key would grow that set with every ping.
            script(keys=[_dkey(entry["id"]), key(*INDEX), key("webhooks", "partner-deliveries", entry["partner"]),
                         key(*SCHEDULE), key("webhooks", "event-deliveries", event or "none")],
                   args=[entry["id"], now, due, ttl, "1" if event else "0", *flat], client=pipe)
        results = pipe.execute()
    return [entry["id"] for entry, created in zip(entries, results) if created]


def claim_and_load(delivery: str, partner_key: str, lease_seconds: float, client: redis.Redis | None = None,
                   now: float | None = None) -> tuple[str, dict[str, Any], str | None]:
    """(state, delivery record, raw partner record): state 'ok' when this caller may attempt now,
    else 'busy', 'missing', 'succeeded' or 'failed' (and nothing loaded)."""
    client = client or get_redis()
    now = time.time() if now is None else now
    answer = _SCRIPTS["claim"](keys=[_dkey(delivery), key(*SCHEDULE), partner_key],
                               args=[delivery, now, now + lease_seconds, secrets.token_hex(8)], client=client)
    if answer[0] != "ok":
        return answer[0], {}, None
    flat = answer[1]
    return "ok", dict(zip(flat[::2], flat[1::2])), answer[2]


def claim(delivery: str, lease_seconds: float, client: redis.Redis | None = None, now: float | None = None) -> str:
    """Only the state of ``claim_and_load`` (the lease is taken when it is 'ok')."""
    return claim_and_load(delivery, key("webhooks", "none"), lease_seconds, client, now)[0]


def partner_of(delivery: str, client: redis.Redis | None = None) -> str | None:
    return (client or get_redis()).hget(_dkey(delivery), "partner")


def finish(delivery: str, attempt: dict[str, Any] | None, status: str, next_at: float | None,
           fields: dict[str, Any], ttl: int, client: redis.Redis | None = None,
           success_health_key: str | None = None) -> None:
    """Record an attempt and the delivery's new state in one atomic script (with the partner's
    health when the attempt succeeded: the failure clock stops)."""
    client = client or get_redis()
    now = time.time()
    mapping = {"status": status, "updated_at": now, "lease_until": 0, "next_attempt_at": next_at or "", **fields}
    flat: list[Any] = []
    for name, value in mapping.items():
        flat += [name, "" if value is None else value]
    _SCRIPTS["finish"](
        keys=[_dkey(delivery), _akey(delivery), key(*SCHEDULE), key(*FAILED),
              success_health_key or key("webhooks", "none")],
        args=[delivery, ttl, now, status, "" if next_at is None else next_at,
              "" if attempt is None else json.dumps(attempt, ensure_ascii=False),
              "1" if success_health_key else "0", *flat],
        client=client)


def restart(delivery: str, due: float, ttl: int, client: redis.Redis | None = None) -> bool:
    """Put a delivery back to pending for a new round of the schedule (resend); False if it is gone."""
    client = client or get_redis()
    if not client.exists(_dkey(delivery)):
        return False
    with client.pipeline(transaction=True) as pipe:
        pipe.hset(_dkey(delivery), mapping={"status": "pending", "round_attempts": 0, "lease_until": 0,
                                            "next_attempt_at": due, "updated_at": time.time(),
                                            "resent_at": time.time(), "failure_reason": ""})
        pipe.expire(_dkey(delivery), ttl)
        pipe.zadd(key(*SCHEDULE), {delivery: due})
        pipe.zrem(key(*FAILED), delivery)
        pipe.execute()
    return True


def discard_if_settled(delivery: str, client: redis.Redis | None = None) -> bool:
    """Remove a finished or expired delivery from the schedule; True if it was removed."""
    client = client or get_redis()
    return bool(_SCRIPTS["discard"](keys=[_dkey(delivery), key(*SCHEDULE)], args=[delivery], client=client))


def defer(delivery: str, due: float, client: redis.Redis | None = None) -> None:
    """Look at this delivery again at ``due`` (the partner has too many attempts in flight)."""
    client = client or get_redis()
    with client.pipeline(transaction=True) as pipe:
        pipe.hset(_dkey(delivery), mapping={"lease_until": 0, "next_attempt_at": due})
        pipe.zadd(key(*SCHEDULE), {delivery: due})
        pipe.execute()


def take_due(now: float, lease_seconds: float, limit: int = 500, client: redis.Redis | None = None) -> list[str]:
    client = client or get_redis()
    return _SCRIPTS["drain"](keys=[key(*SCHEDULE)], args=[now, now + lease_seconds, limit], client=client)


def due_at(delivery: str, client: redis.Redis | None = None) -> float | None:
    return (client or get_redis()).zscore(key(*SCHEDULE), delivery)


def get(delivery: str, client: redis.Redis | None = None) -> dict[str, Any] | None:
    raw = (client or get_redis()).hgetall(_dkey(delivery))
    return raw or None


def get_many(ids: list[str], client: redis.Redis | None = None) -> list[dict[str, Any]]:
    client = client or get_redis()
    with client.pipeline(transaction=False) as pipe:
        for delivery in ids:
            pipe.hgetall(_dkey(delivery))
        return [raw for raw in pipe.execute() if raw]


def attempts(delivery: str, client: redis.Redis | None = None) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (client or get_redis()).lrange(_akey(delivery), 0, -1)]


def ids_of_event(event_id: str, client: redis.Redis | None = None) -> list[str]:
    return sorted((client or get_redis()).smembers(key("webhooks", "event-deliveries", event_id)))


def newest(partner: str | None = None, status: str | None = None, limit: int = 50,
           since: float | None = None, client: redis.Redis | None = None) -> list[dict[str, Any]]:
    """Deliveries newest first, filtered by partner and status; expired ones are skipped."""
    client = client or get_redis()
    if status == "failed":
        index = key(*FAILED)
    elif partner:
        index = key("webhooks", "partner-deliveries", partner)
    else:
        index = key(*INDEX)
    low = "-inf" if since is None else since
    out: list[dict[str, Any]] = []
    offset, page = 0, max(limit, 100)
    while len(out) < limit:
        ids = client.zrevrangebyscore(index, "+inf", low, start=offset, num=page)
        if not ids:
            break
        offset += len(ids)
        for record in get_many(ids, client):
            if partner and record.get("partner") != partner:
                continue
            if status and record.get("status") != status:
                continue
            if since is not None and status == "failed" and float(record.get("created_at", 0)) < since:
                continue
            out.append(record)
            if len(out) >= limit:
                break
    return out


def prune(older_than: float, partners: list[str], client: redis.Redis | None = None, batch: int = 1000) -> int:
    """Drop index entries older than ``older_than`` and schedule entries whose record is gone.

    The records, their attempt lists and the per-event sets expire by TTL; the
    per-partner index of a removed partner expires by TTL too (refreshed only
    while deliveries are created for it). The schedule holds only pending
    deliveries, but one whose record expired (a retention shorter than the
    schedule) would otherwise wait there until it came due: it is dropped here.
    """
    client = client or get_redis()
    with client.pipeline(transaction=False) as pipe:
        pipe.zremrangebyscore(key(*INDEX), "-inf", older_than)
        pipe.zremrangebyscore(key(*FAILED), "-inf", older_than)
        for name in partners:
            pipe.zremrangebyscore(key("webhooks", "partner-deliveries", name), "-inf", older_than)
        removed = sum(pipe.execute())
    gone: list[str] = []
    for start in range(0, client.zcard(key(*SCHEDULE)), batch):
        ids = client.zrange(key(*SCHEDULE), start, start + batch - 1)
        with client.pipeline(transaction=False) as pipe:
            for delivery in ids:
                pipe.exists(_dkey(delivery))
            gone += [d for d, exists in zip(ids, pipe.execute()) if not exists]
    for delivery in gone:  # discard_if_settled re-checks atomically: a pending record is never dropped
        removed += discard_if_settled(delivery, client)
    return removed
