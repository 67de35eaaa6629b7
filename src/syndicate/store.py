"""The Redis connection and key naming shared by every part of syndicate.

All keys live under one prefix (``SYNDICATE_REDIS_PREFIX``) so one Redis can host
several deployments or test runs; ``key("article", id)`` builds
``{prefix}article:{id}``. Connections are pooled per process and per URL.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator

import redis

from .config import get_settings
from .errors import ConfigError


def redis_url() -> str:
    url = get_settings().redis_url
    if not url:
        raise ConfigError(
            "SYNDICATE_REDIS_URL is not set; start everything with `syndicate run` "
            "(it starts an embedded Redis) or point SYNDICATE_REDIS_URL at a Redis server"
        )
    return url


# A Redis that stops answering (stopped, partitioned) must fail a call, not hang it: the API then
# answers 503 and a task retries. Connecting takes milliseconds when Redis is there.
SOCKET_TIMEOUT = 10.0
CONNECT_TIMEOUT = 3.0


def unavailable_errors() -> tuple[type[Exception], ...]:
    """Errors that mean the store or broker cannot serve now: down, loading (BusyLoadingError is a
    ConnectionError), timing out, read-only after a failover, a replica cut off from its primary,
    out of memory under noeviction; kombu's OperationalError is the broker side."""
    from kombu.exceptions import OperationalError

    return (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError, redis.OutOfMemoryError,
            redis.exceptions.MasterDownError, OperationalError)


@functools.lru_cache(maxsize=8)
def _client(url: str, decode: bool, pid: int) -> redis.Redis:
    # pid is part of the cache key: a forked worker must not share its parent's sockets.
    return redis.Redis.from_url(url, decode_responses=decode, health_check_interval=30,
                                socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=CONNECT_TIMEOUT)


def get_redis(decode: bool = True) -> redis.Redis:
    """A pooled client for the configured Redis; ``decode=False`` returns bytes."""
    return _client(redis_url(), decode, os.getpid())


def key(*parts: object) -> str:
    """``key("feed", "us", "rss")`` -> ``{prefix}feed:us:rss``."""
    return get_settings().redis_prefix + ":".join(str(p) for p in parts)


def scan_prefix(client: redis.Redis, prefix: str | None = None, count: int = 500) -> Iterator[str]:
    """Every key under ``prefix`` (default: the whole deployment)."""
    pattern = (prefix or get_settings().redis_prefix) + "*"
    yield from client.scan_iter(match=pattern, count=count)


def delete_prefix(client: redis.Redis, prefix: str) -> int:
    """Delete every key under ``prefix``; used by tests and ``syndicate reset``."""
    deleted = 0
    batch: list[str] = []
    for name in scan_prefix(client, prefix):
        batch.append(name)
        if len(batch) >= 500:
            deleted += client.unlink(*batch)
            batch.clear()
    if batch:
        deleted += client.unlink(*batch)
    return deleted
