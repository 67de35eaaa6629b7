"""The partner registry in Redis: configuration, secrets and health.

Keys (under the deployment prefix):
    webhooks:partner:{name}         string  the record (JSON): configuration, secrets, enabled state
    webhooks:partners               zset    name -> creation time
    webhooks:partner-health:{name}  hash    failing_since, last_success_at, last_failure_at

Health lives apart from the record because workers write it on every attempt,
while operators edit the record; changes to the record go through WATCH/MULTI
so a worker disabling a partner and an operator rotating its secret never
overwrite each other.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import redis

from ..errors import Conflict, NotFound, Problem, ValidationFailed
from ..ingest import EVENT_TYPES
from ..schemas import problems
from ..store import get_redis, key
from .guard import BlockedDestination, Guard
from .signing import new_secret
from .timeparse import iso
from .transport import is_reserved

CONFIG_FIELDS = ("name", "url", "eventTypes", "sections", "description", "enabled", "fullArticle", "headers")


def record_key(name: str) -> str:
    return key("webhooks", "partner", name)


def health_key(name: str) -> str:
    return key("webhooks", "partner-health", name)


def check_config(config: Any, guard: Guard) -> dict[str, Any]:
    """Every problem with a partner configuration, schema first, then what a schema cannot say."""
    found = problems("partner", config)
    if not found:
        for header in config.get("headers", {}):
            if is_reserved(header):
                found.append(Problem(f"$.headers[{json.dumps(header)}]",
                                     "this header is set by syndicate and cannot be replaced; remove it"))
        try:
            guard.check_url(config["url"])
        except BlockedDestination as exc:
            found.append(Problem("$.url", exc.message))
    if found:
        raise ValidationFailed(found)
    return config


def _defaults(config: dict[str, Any]) -> dict[str, Any]:
    out = dict(config)
    out.setdefault("eventTypes", list(EVENT_TYPES))
    out.setdefault("sections", [])
    out.setdefault("description", "")
    out.setdefault("enabled", True)
    out.setdefault("fullArticle", False)
    out.setdefault("headers", {})
    return out


def add(config: dict[str, Any], guard: Guard, client: redis.Redis | None = None,
        now: float | None = None) -> tuple[dict[str, Any], str]:
    """Register a partner; returns its record and the new secret (shown once)."""
    client = client or get_redis()
    now = time.time() if now is None else now
    check_config(config, guard)
    secret = new_secret()
    record = {
        **_defaults(config),
        "secrets": [{"secret": secret, "createdAt": now, "expiresAt": None}],
        "createdAt": now,
        "updatedAt": now,
        "disabledReason": None if config.get("enabled", True) else "disabled at creation",
    }
    if not client.set(record_key(config["name"]), json.dumps(record), nx=True):
        raise Conflict(f"a partner named {config['name']!r} already exists; pick another name or remove it first")
    client.zadd(key("webhooks", "partners"), {config["name"]: now})
    return record, secret


def get(name: str, client: redis.Redis | None = None) -> dict[str, Any]:
    raw = (client or get_redis()).get(record_key(name))
    if raw is None:
        raise NotFound(f"no partner named {name!r}; `syndicate partners list` shows them")
    return json.loads(raw)


def find(name: str, client: redis.Redis | None = None) -> dict[str, Any] | None:
    raw = (client or get_redis()).get(record_key(name))
    return json.loads(raw) if raw else None


def names(client: redis.Redis | None = None) -> list[str]:
    return (client or get_redis()).zrange(key("webhooks", "partners"), 0, -1)


def all_partners(client: redis.Redis | None = None) -> list[dict[str, Any]]:
    client = client or get_redis()
    wanted = names(client)
    if not wanted:
        return []
    raws = client.mget([record_key(n) for n in wanted])
    return [json.loads(r) for r in raws if r]


def _change(name: str, change: Callable[[dict[str, Any]], dict[str, Any]], client: redis.Redis | None = None) -> dict[str, Any]:
    client = client or get_redis()
    watched = record_key(name)
    with client.pipeline() as pipe:
        while True:
            try:
                pipe.watch(watched)
                raw = pipe.get(watched)
                if raw is None:
                    pipe.unwatch()
                    raise NotFound(f"no partner named {name!r}; `syndicate partners list` shows them")
                record = change(json.loads(raw))
                record["updatedAt"] = time.time()
                pipe.multi()
                pipe.set(watched, json.dumps(record))
                pipe.execute()
                return record
            except redis.WatchError:
                continue


def replace_config(name: str, config: dict[str, Any], guard: Guard, client: redis.Redis | None = None) -> dict[str, Any]:
    """Replace the configuration (PUT); secrets, history and health stay."""
    check_config(config, guard)
    if config["name"] != name:
        raise ValidationFailed([Problem("$.name", f"the name cannot change (it is {name!r})")])

    def change(record: dict[str, Any]) -> dict[str, Any]:
        kept = {k: v for k, v in record.items() if k not in CONFIG_FIELDS and not k.startswith("x-")}
        updated = {**kept, **_defaults(config)}
        if updated["enabled"] and not record.get("enabled"):
            updated["disabledReason"] = None
        return updated

    return _change(name, change, client)


def set_enabled(name: str, enabled: bool, reason: str | None = None, client: redis.Redis | None = None) -> dict[str, Any]:
    def change(record: dict[str, Any]) -> dict[str, Any]:
        record["enabled"] = enabled
        record["disabledReason"] = None if enabled else (reason or "disabled by an operator")
        return record

    record = _change(name, change, client)
    if enabled:
        # A fresh start: the continuous-failure clock restarts from the next failure.
        (client or get_redis()).hdel(health_key(name), "failing_since")
    return record


def rotate(name: str, grace_seconds: float, client: redis.Redis | None = None, now: float | None = None) -> tuple[dict[str, Any], str]:
    """A new primary secret; earlier ones keep signing for ``grace_seconds``, then drop."""
    now = time.time() if now is None else now
    secret = new_secret()

    def change(record: dict[str, Any]) -> dict[str, Any]:
        until = now + max(grace_seconds, 0.0)
        kept = []
        for entry in live_secret_entries(record, now):
            expires = entry.get("expiresAt")
            kept.append({**entry, "expiresAt": until if expires is None else min(expires, until)})
        record["secrets"] = [{"secret": secret, "createdAt": now, "expiresAt": None}, *kept]
        return record

    return _change(name, change, client), secret


def remove(name: str, client: redis.Redis | None = None) -> None:
    client = client or get_redis()
    with client.pipeline() as pipe:
        pipe.delete(record_key(name), health_key(name))
        pipe.zrem(key("webhooks", "partners"), name)
        deleted = pipe.execute()[0]
    if not deleted:
        raise NotFound(f"no partner named {name!r}; `syndicate partners list` shows them")


def live_secret_entries(record: dict[str, Any], now: float | None = None) -> list[dict[str, Any]]:
    now = time.time() if now is None else now
    return [s for s in record.get("secrets", []) if s.get("expiresAt") is None or s["expiresAt"] > now]


def live_secrets(record: dict[str, Any], now: float | None = None) -> list[str]:
    """Secrets that sign right now, newest first."""
    return [s["secret"] for s in live_secret_entries(record, now)]


def matches(record: dict[str, Any], event_type: str, section: str) -> bool:
    """Does this enabled partner want this event?"""
    return bool(record.get("enabled", True)) and wants(record, event_type, section)


def wants(record: dict[str, Any], event_type: str, section: str) -> bool:
    """Would this partner want this event, enabled or not? (A disabled one gets it recorded as skipped.)"""
    if event_type not in record.get("eventTypes", EVENT_TYPES):
        return False
    sections = record.get("sections") or []
    return not sections or section.casefold() in {s.casefold() for s in sections}


# --- health ---------------------------------------------------------------

def record_failure(name: str, now: float, client: redis.Redis | None = None) -> float:
    """Note a failure; returns since when the partner has been failing without a success."""
    client = client or get_redis()
    with client.pipeline(transaction=False) as pipe:
        pipe.hsetnx(health_key(name), "failing_since", now)
        pipe.hset(health_key(name), "last_failure_at", now)
        pipe.hget(health_key(name), "failing_since")
        since = pipe.execute()[2]
    return float(since) if since else now


def health(name: str, client: redis.Redis | None = None) -> dict[str, float]:
    raw = (client or get_redis()).hgetall(health_key(name))
    return {k: float(v) for k, v in raw.items()}


def shown(name: str, client: redis.Redis | None = None) -> dict[str, Any]:
    """One partner as ``partners show`` and ``GET /v1/partners/{name}`` present it, health included."""
    record = public(get(name, client))
    record["health"] = {k: iso(v) for k, v in health(name, client).items()}
    return record


def public(record: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """The record as operators see it: no secret values, only when each was made and expires."""
    out = {k: v for k, v in record.items() if k != "secrets"}
    out["createdAt"], out["updatedAt"] = iso(record.get("createdAt")), iso(record.get("updatedAt"))
    out["secrets"] = [
        {"createdAt": iso(s["createdAt"]), "expiresAt": iso(s.get("expiresAt"))} for s in live_secret_entries(record, now)
    ]
    return out
