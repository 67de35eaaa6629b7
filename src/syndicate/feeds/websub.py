"""WebSub publisher side: tell the hub a topic (feed URL) changed.

Pings are coalesced in a Redis sorted set (topic -> when due), so a burst of
renders of one feed costs one ping, and a failed ping is retried with backoff
without ever holding up a render.

Keys: feeds:websub:pending  zset  topic URL -> epoch when the next attempt is due
      feeds:websub:attempts hash  topic URL -> failed attempts so far
"""

from __future__ import annotations

import dataclasses
import logging
import time

import redis
import requests

from ..store import key

log = logging.getLogger("syndicate.feeds.websub")

BACKOFF = (2.0, 10.0, 60.0, 300.0, 1800.0)
MAX_ATTEMPTS = 10


@dataclasses.dataclass(frozen=True)
class PingOutcome:
    topic: str
    ok: bool
    status: int | None
    error: str | None = None


def ping(hub: str, topic: str, session: requests.Session | None = None, timeout: float = 5.0) -> PingOutcome:
    """POST ``hub.mode=publish`` for ``topic``; never raises on an HTTP or network failure."""
    try:
        response = (session or requests).post(
            hub, data={"hub.mode": "publish", "hub.url": topic}, timeout=timeout, allow_redirects=False)
    except requests.RequestException as exc:
        return PingOutcome(topic, False, None, f"{type(exc).__name__}: {exc}")
    return PingOutcome(topic, 200 <= response.status_code < 300, response.status_code,
                       None if response.ok else response.text[:200])


def queue(client: redis.Redis, topics: list[str], due: float | None = None) -> None:
    if topics:
        # NX: a topic already waiting keeps its place; one ping covers both changes.
        client.zadd(key("feeds", "websub", "pending"), {t: due or time.time() for t in topics}, nx=True)


def take_due(client: redis.Redis, now: float | None = None) -> list[str]:
    """Atomically claim every topic whose ping is due."""
    pending = key("feeds", "websub", "pending")
    with client.pipeline() as pipe:
        pipe.zrangebyscore(pending, "-inf", now or time.time())
        pipe.zremrangebyscore(pending, "-inf", now or time.time())
        topics, _ = pipe.execute()
    return topics


def next_due(client: redis.Redis) -> float | None:
    first = client.zrange(key("feeds", "websub", "pending"), 0, 0, withscores=True)
    return first[0][1] if first else None


def record(client: redis.Redis, outcome: PingOutcome) -> float | None:
    """Note an outcome; for a failure, schedule the retry and return its delay (None: given up or done)."""
    attempts_key = key("feeds", "websub", "attempts")
    if outcome.ok:
        client.hdel(attempts_key, outcome.topic)
        return None
    attempts = client.hincrby(attempts_key, outcome.topic, 1)
    if attempts >= MAX_ATTEMPTS:
        log.error("websub: giving up on %s after %d attempts: %s", outcome.topic, attempts, outcome.error)
        client.hdel(attempts_key, outcome.topic)
        return None
    delay = BACKOFF[min(attempts - 1, len(BACKOFF) - 1)]
    log.warning("websub: ping for %s failed (%s %s); retrying in %.0fs",
                outcome.topic, outcome.status, outcome.error, delay)
    # The retry is due after the backoff; a ping already queued by a newer change is folded into it.
    client.zadd(key("feeds", "websub", "pending"), {outcome.topic: time.time() + delay})
    return delay
