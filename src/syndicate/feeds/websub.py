"""WebSub publisher side: tell the hub a topic (feed URL) changed.

Pings are coalesced in a Redis sorted set (topic -> when due), so a burst of
renders of one feed costs one ping, and a failed ping is retried with backoff
without ever holding up a render.

A claimed topic is not removed but leased (its due time moves LEASE_SECONDS
ahead) and only dropped once its ping succeeded: a flush task that dies mid-way
leaves its topics to be pinged again when the lease runs out. A change that
arrives while a ping is in flight pulls the topic's due time back to now
(``ZADD LT``), so the success of the older ping does not swallow it.

Keys: feeds:websub:pending  zset  topic URL -> epoch when the next attempt is due
      feeds:websub:attempts hash  topic URL -> failed attempts so far
"""

from __future__ import annotations

import dataclasses
import logging
import time

import redis
import requests

from .. import metrics
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


LEASE_SECONDS = 120.0

# KEYS: pending; ARGV: topic, leased score, retry time ('' = done). Acts only on the claim's own lease:
# a topic re-queued since the claim (a newer change) keeps its earlier due time and gets its own ping.
# Scores compare as numbers: the lease's text in Redis and in Python may differ, its double does not.
_SETTLE = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
if ARGV[3] == '' then return redis.call('ZREM', KEYS[1], ARGV[1]) end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
"""


def _pending() -> str:
    return key("feeds", "websub", "pending")


def queue(client: redis.Redis, topics: list[str], due: float | None = None) -> None:
    if topics:
        # LT: a topic already waiting keeps the earlier due time (one ping covers both changes),
        # and a topic leased by a ping in flight is pulled back to now, so this change gets its own ping.
        client.zadd(_pending(), {t: due or time.time() for t in topics}, lt=True)


@dataclasses.dataclass(frozen=True)
class Claim:
    topic: str
    lease: str  # the leased score (exact repr of the double), for the compare-and-settle


def take_due(client: redis.Redis, now: float | None = None) -> list[Claim]:
    """Atomically claim (lease) every topic whose ping is due."""
    now = time.time() if now is None else now
    lease = now + LEASE_SECONDS
    pending = _pending()
    while True:
        with client.pipeline() as pipe:
            try:
                pipe.watch(pending)
                topics = pipe.zrangebyscore(pending, "-inf", now)
                if not topics:
                    return []
                pipe.multi()
                pipe.zadd(pending, {t: lease for t in topics}, xx=True)
                pipe.zmscore(pending, topics)
                _, scores = pipe.execute()
            except redis.WatchError:
                continue
        return [Claim(t, repr(float(score))) for t, score in zip(topics, scores)]


def next_due(client: redis.Redis) -> float | None:
    first = client.zrange(_pending(), 0, 0, withscores=True)
    return first[0][1] if first else None


def _settle(client: redis.Redis, claim: Claim, retry_at: float | None) -> None:
    client.register_script(_SETTLE)(keys=[_pending()], args=[claim.topic, claim.lease,
                                                               "" if retry_at is None else repr(retry_at)])


def drop(client: redis.Redis, claim: Claim) -> None:
    """Forget a claimed topic without pinging (no hub is configured any more)."""
    _settle(client, claim, None)


def record(client: redis.Redis, claim: Claim, outcome: PingOutcome) -> float | None:
    """Settle a claimed topic: done on success, else the retry is scheduled and its delay returned.

    None means nothing more to do (pinged, or given up after MAX_ATTEMPTS).
    """
    attempts_key = key("feeds", "websub", "attempts")
    metrics.websub_ping(outcome.ok)
    if outcome.ok:
        client.hdel(attempts_key, outcome.topic)
        _settle(client, claim, None)
        return None
    attempts = client.hincrby(attempts_key, outcome.topic, 1)
    if attempts >= MAX_ATTEMPTS:
        log.error("websub: giving up on %s after %d attempts: %s", outcome.topic, attempts, outcome.error)
        client.hdel(attempts_key, outcome.topic)
        _settle(client, claim, None)
        return None
    delay = BACKOFF[min(attempts - 1, len(BACKOFF) - 1)]
    log.warning("websub: ping for %s failed (%s %s); retrying in %.0fs",
                outcome.topic, outcome.status, outcome.error, delay)
    _settle(client, claim, time.time() + delay)
    return delay
