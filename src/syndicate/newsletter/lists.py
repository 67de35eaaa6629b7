"""Newsletter lists and their subscribers, kept in Redis.

Keys (under the deployment prefix):
    nl:lists                set    list ids
    nl:list:{list}          hash   config (JSON), created_at, last_slot, last_edition_at
    nl:subs:{list}          hash   address -> subscriber record (JSON: sid, status, dates, source)
    nl:sids:{list}          hash   subscriber id -> address (tokens carry the id, never the address)
    nl:sid-of:{list}        hash   address -> subscriber id (read by the sender's Lua claim)
    nl:confirmed:{list}     zset   confirmed addresses -> confirmation time: who receives editions
    nl:unconfirmed:{list}   zset   pending (double opt-in) addresses -> time of the latest request;
                                   pruned once their confirmation link has expired (the subscribe
                                   endpoint is public: unconfirmed requests must not pile up)

A subscriber keeps one random id for life, so an unsubscribe link in an old
email keeps working; an address that unsubscribed stays recorded as such, and
a bulk import does not subscribe it again.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Iterator
from typing import Any

import redis

from ..errors import Conflict, NotFound
from ..store import get_redis, key
from . import listconfig

PENDING, CONFIRMED, UNSUBSCRIBED = "pending", "confirmed", "unsubscribed"


def _client(client: redis.Redis | None) -> redis.Redis:
    return client or get_redis()


# --- lists -----------------------------------------------------------------

def put_list(doc: Any, client: redis.Redis | None = None) -> tuple[dict[str, Any], bool]:
    """Create or replace a list; returns (config, created)."""
    config = listconfig.validate(doc)
    r = _client(client)
    list_key = key("nl", "list", config["id"])
    with r.pipeline() as pipe:
        pipe.hsetnx(list_key, "created_at", time.time())
        pipe.hset(list_key, "config", json.dumps(config, ensure_ascii=False))
        pipe.sadd(key("nl", "lists"), config["id"])
        created = bool(pipe.execute()[0])
    return config, created


def get_list(list_id: str, client: redis.Redis | None = None) -> dict[str, Any]:
    raw = _client(client).hget(key("nl", "list", list_id), "config")
    if not raw:
        raise NotFound(f"no newsletter list {list_id!r}; `syndicate lists list` shows them")
    return json.loads(raw)


def list_state(list_id: str, client: redis.Redis | None = None) -> dict[str, str]:
    state = _client(client).hgetall(key("nl", "list", list_id))
    state.pop("config", None)
    return state


def all_lists(client: redis.Redis | None = None) -> list[dict[str, Any]]:
    """Every list's config, by id; two round trips however many lists there are."""
    r = _client(client)
    list_ids = sorted(r.smembers(key("nl", "lists")))
    if not list_ids:
        return []
    with r.pipeline(transaction=False) as pipe:
        for list_id in list_ids:
            pipe.hget(key("nl", "list", list_id), "config")
        raws = pipe.execute()
    return [json.loads(raw) for raw in raws if raw]


def delete_list(list_id: str, client: redis.Redis | None = None) -> None:
    r = _client(client)
    get_list(list_id, r)
    r.srem(key("nl", "lists"), list_id)
    r.unlink(*(key("nl", part, list_id) for part in ("list", "subs", "sids", "sid-of", "confirmed", "unconfirmed",
                                                      "pending", "included")))
    # The edition history goes with the editions it names: they expire after the retention period.
    from ..config import get_settings

    r.expire(key("nl", "editions", list_id), get_settings().newsletter_retention_days * 86400)


# --- subscribers -------------------------------------------------------------

def _record(r: redis.Redis, list_id: str, address: str) -> dict[str, Any] | None:
    raw = r.hget(key("nl", "subs", list_id), address)
    return json.loads(raw) if raw else None


def _save(pipe: Any, list_id: str, address: str, record: dict[str, Any]) -> None:
    pipe.hset(key("nl", "subs", list_id), address, json.dumps(record))
    pipe.hset(key("nl", "sids", list_id), record["sid"], address)
    pipe.hset(key("nl", "sid-of", list_id), address, record["sid"])
    if record["status"] == CONFIRMED:
        pipe.zadd(key("nl", "confirmed", list_id), {address: record.get("confirmed_at") or time.time()})
    else:
        pipe.zrem(key("nl", "confirmed", list_id), address)
    if record["status"] == PENDING:
        pipe.zadd(key("nl", "unconfirmed", list_id), {address: time.time()})
    else:
        pipe.zrem(key("nl", "unconfirmed", list_id), address)


def _change(list_id: str, address: str, update, client: redis.Redis | None) -> dict[str, Any]:
    """Read-modify-write one subscriber under WATCH, so concurrent changes retry instead of clobbering."""
    r = _client(client)
    sub_key = key("nl", "subs", list_id)
    with r.pipeline() as pipe:
        while True:
            try:
                pipe.watch(sub_key)
                raw = pipe.hget(sub_key, address)
                record = update(json.loads(raw) if raw else None)
                if record is None:
                    pipe.unwatch()
                    return {}
                pipe.multi()
                _save(pipe, list_id, address, record)
                pipe.execute()
                return record
            except redis.WatchError:
                continue


def _new(status: str, source: str) -> dict[str, Any]:
    now = time.time()
    return {"sid": secrets.token_urlsafe(9), "status": status, "created_at": now,
            "confirmed_at": now if status == CONFIRMED else None, "source": source}


def add_subscriber(list_id: str, email: str, source: str = "admin", resubscribe: bool = True,
                   client: redis.Redis | None = None) -> tuple[dict[str, Any], str]:
    """Add a confirmed subscriber (an admin vouches for consent). Returns (record, outcome)."""
    get_list(list_id, client)
    address = listconfig.normalize_email(email)
    outcome = {"value": "added"}

    def update(record):
        if record is None:
            return _new(CONFIRMED, source)
        if record["status"] == CONFIRMED:
            outcome["value"] = "unchanged"
            return None
        if record["status"] == UNSUBSCRIBED and not resubscribe:
            outcome["value"] = "suppressed"
            return None
        outcome["value"] = "resubscribed" if record["status"] == UNSUBSCRIBED else "confirmed"
        return {**record, "status": CONFIRMED, "confirmed_at": time.time(), "source": source}

    record = _change(list_id, address, update, client) or _record(_client(client), list_id, address) or {}
    return {**record, "email": address}, outcome["value"]


def request_subscription(list_id: str, email: str, client: redis.Redis | None = None) -> dict[str, Any] | None:
    """Record a pending subscriber (public double opt-in); None when already confirmed."""
    get_list(list_id, client)
    address = listconfig.normalize_email(email)

    def update(record):
        if record is None:
            return _new(PENDING, "subscribe")
        if record["status"] == CONFIRMED:
            return None
        return {**record, "status": PENDING, "source": "subscribe"}

    record = _change(list_id, address, update, client)
    return {**record, "email": address} if record else None


_PRUNE = """
-- KEYS: unconfirmed, subs, sids, sid-of   ARGV: cutoff, limit
local n = 0
for _, address in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))) do
  redis.call('ZREM', KEYS[1], address)
  local raw = redis.call('HGET', KEYS[2], address)
  if raw then
    local record = cjson.decode(raw)
    if record.status == 'pending' then
      n = n + 1
      if record.unsubscribed_at then
        -- It had unsubscribed before asking again: it stays suppressed.
        record.status = 'unsubscribed'
        redis.call('HSET', KEYS[2], address, cjson.encode(record))
      else
        redis.call('HDEL', KEYS[2], address)
        redis.call('HDEL', KEYS[3], record.sid)
        redis.call('HDEL', KEYS[4], address)
      end
    end
  end
end
return n
"""


def prune_unconfirmed(list_id: str, older_than: float, limit: int = 1000,
                      client: redis.Redis | None = None) -> int:
    """Forget subscription requests not confirmed since ``older_than`` (epoch s); how many were dropped."""
    keys = [key("nl", part, list_id) for part in ("unconfirmed", "subs", "sids", "sid-of")]
    return int(_client(client).eval(_PRUNE, len(keys), *keys, older_than, limit))


def address_of(list_id: str, subscriber_id: str, client: redis.Redis | None = None) -> str | None:
    return _client(client).hget(key("nl", "sids", list_id), subscriber_id)


def confirm(list_id: str, subscriber_id: str, client: redis.Redis | None = None) -> str:
    """Confirm a pending subscriber; returns the address. Confirming twice is fine."""
    address = address_of(list_id, subscriber_id, client)
    if address is None:
        raise NotFound("this subscription no longer exists; subscribe again")

    def update(record):
        if record is None or record["status"] == CONFIRMED:
            return None
        if record["status"] == UNSUBSCRIBED:
            raise Conflict("this address unsubscribed after asking to subscribe; subscribe again")
        return {**record, "status": CONFIRMED, "confirmed_at": time.time()}

    _change(list_id, address, update, client)
    return address


def unsubscribe(list_id: str, subscriber_id: str, client: redis.Redis | None = None) -> str | None:
    """Unsubscribe by id (the token's payload); returns the address, None if unknown."""
    address = address_of(list_id, subscriber_id, client)
    if address is None:
        return None

    def update(record):
        if record is None or record["status"] == UNSUBSCRIBED:
            return None
        return {**record, "status": UNSUBSCRIBED, "unsubscribed_at": time.time()}

    _change(list_id, address, update, client)
    return address


def remove_subscriber(list_id: str, email: str, client: redis.Redis | None = None) -> dict[str, Any]:
    """Admin removal: recorded as unsubscribed (so imports do not bring it back)."""
    address = listconfig.normalize_email(email)
    record = _record(_client(client), list_id, address)
    if record is None:
        raise NotFound(f"{address} is not on list {list_id!r}")
    unsubscribe(list_id, record["sid"], client)
    return {**record, "status": UNSUBSCRIBED, "email": address}


def get_subscriber(list_id: str, email: str, client: redis.Redis | None = None) -> dict[str, Any] | None:
    address = listconfig.normalize_email(email)
    record = _record(_client(client), list_id, address)
    return {**record, "email": address} if record else None


def iter_subscribers(list_id: str, status: str | None = None, client: redis.Redis | None = None) -> Iterator[dict[str, Any]]:
    r = _client(client)
    for address, raw in r.hscan_iter(key("nl", "subs", list_id), count=500):
        record = json.loads(raw)
        if status is None or record["status"] == status:
            yield {**record, "email": address}


def counts(list_id: str, client: redis.Redis | None = None) -> dict[str, int]:
    out = {PENDING: 0, CONFIRMED: 0, UNSUBSCRIBED: 0}
    for record in iter_subscribers(list_id, client=client):
        out[record["status"]] = out.get(record["status"], 0) + 1
    return out


def import_rows(list_id: str, rows: Iterable[dict[str, str]], client: redis.Redis | None = None,
                on_row=None) -> dict[str, Any]:
    """Add many confirmed subscribers; unsubscribed addresses stay unsubscribed.

    Returns counts per outcome and the first problems (row number, message).
    """
    from ..errors import ValidationFailed

    get_list(list_id, client)
    result: dict[str, Any] = {"added": 0, "confirmed": 0, "unchanged": 0, "suppressed": 0, "invalid": 0, "problems": []}
    for number, row in enumerate(rows, start=2):  # row 1 is the header
        email = (row.get("email") or "").strip()
        try:
            _, outcome = add_subscriber(list_id, email, source="import", resubscribe=False, client=client)
            result[outcome] = result.get(outcome, 0) + 1
        except ValidationFailed as exc:
            result["invalid"] += 1
            if len(result["problems"]) < 100:
                result["problems"].append({"row": number, "message": exc.problems[0].message})
        if on_row:
            on_row()
    return result
