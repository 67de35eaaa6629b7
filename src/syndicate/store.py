"""The Redis connection and key naming shared by every part of syndicate.

All keys live under one prefix (``SYNDICATE_REDIS_PREFIX``) so one Redis can host
several deployments or test runs; ``key("article", id)`` builds
``{prefix}article:{id}``. Connections are pooled per process and per URL.

With ``SYNDICATE_REDIS_SENTINELS`` the clients ask the Sentinels which server is
the primary of ``SYNDICATE_REDIS_SENTINEL_MASTER``, and ask again whenever a
connection breaks or lands on a server that has become a read-only replica, so
the API and the workers follow a failover with no restart. Replication is
asynchronous: a write the old primary acknowledged but had not yet sent to the
replica that gets promoted is lost. ``SYNDICATE_INGEST_REPLICAS`` closes that gap
for ingest (``confirm_replicated``): the answer waits for that many replicas.
"""

from __future__ import annotations

import functools
import os
import re
import time
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


# Each Sentinel is asked with a short timeout: a dead one must not hold up finding the primary.
SENTINEL_TIMEOUT = 1.0


class NotReplicated(redis.ConnectionError):
    """The write reached the primary but not enough replicas in time (``SYNDICATE_INGEST_REPLICAS``)."""


def _master_kwargs(url: str) -> dict:
    # The user, password and database come from the first sentinel:// URL (SYNDICATE_REDIS_URL's).
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url.split(";", 1)[0])
    kwargs: dict = {"db": int(parts.path.strip("/") or 0)}
    if parts.password is not None:
        kwargs.update(username=unquote(parts.username or "") or None, password=unquote(parts.password))
    return kwargs


def _sentinel_options(url: str) -> tuple[list[tuple[str, int]], dict, dict]:
    settings = get_settings()
    sentinel_kwargs = {"socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT}
    client_kwargs = {"socket_timeout": SOCKET_TIMEOUT, "socket_connect_timeout": CONNECT_TIMEOUT,
                     **_master_kwargs(url)}
    return list(settings.redis_sentinels), sentinel_kwargs, client_kwargs


@functools.lru_cache(maxsize=8)
def _client(url: str, decode: bool, pid: int, master: str | None = None) -> redis.Redis:
    # pid is part of the cache key: a forked worker must not share its parent's sockets.
    if master:
        from redis.sentinel import Sentinel

        sentinels, sentinel_kwargs, client_kwargs = _sentinel_options(url)
        manager = Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs, **client_kwargs)
        return manager.master_for(master, decode_responses=decode, health_check_interval=30,
                                  parser_class=parser_class())
    return connect(url, decode)


def get_redis(decode: bool = True) -> redis.Redis:
    """A pooled client for the configured Redis (or Sentinel-managed primary); ``decode=False`` returns bytes."""
    return _client(redis_url(), decode, os.getpid(), get_settings().redis_sentinel_master)


def async_client(decode: bool = False):
    """A new ``redis.asyncio`` client for the configured Redis; the caller keeps one per event loop."""
    import redis.asyncio as aioredis

    url, master = redis_url(), get_settings().redis_sentinel_master
    if master:
        from redis.asyncio.sentinel import Sentinel

        sentinels, sentinel_kwargs, client_kwargs = _sentinel_options(url)
        manager = Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs, **client_kwargs)
        return manager.master_for(master, decode_responses=decode)
    return aioredis.Redis.from_url(url, decode_responses=decode, socket_timeout=SOCKET_TIMEOUT,
                                   socket_connect_timeout=CONNECT_TIMEOUT)


def broker_sentinel_options() -> dict:
    """Transport options kombu's Sentinel transport needs when the broker is the store's Redis via Sentinel
    ({} without Sentinels): the master's name, and short timeouts for asking each Sentinel."""
    settings = get_settings()
    if not settings.redis_sentinels:
        return {}
    return {"master_name": settings.redis_sentinel_master,
            "sentinel_kwargs": {"socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT}}


def confirm_replicated(client: redis.Redis) -> None:
    """Return once ``SYNDICATE_INGEST_REPLICAS`` replicas hold every write made so far, else raise NotReplicated.

    WAIT counts only the writes of its own connection, and the write being confirmed went through
    another pooled connection; so this connection writes a small marker first. The replication stream
    is in order: a replica that acknowledged the marker holds everything written before it.
    Without the setting (0, the default) this does nothing.
    """
    settings = get_settings()
    wanted = settings.ingest_replicas
    if wanted <= 0:
        return
    with client.pipeline(transaction=False) as pipe:
        pipe.set(key("replication", "marker"), repr(time.time()))
        pipe.execute_command("WAIT", wanted, settings.ingest_wait_ms)
        _, acknowledged = pipe.execute()
    if int(acknowledged) < wanted:
        raise NotReplicated(f"the write reached the primary but {acknowledged} of {wanted} replicas within "
                            f"{settings.ingest_wait_ms} ms (SYNDICATE_INGEST_REPLICAS); it may be kept, retry")


# Redis before 7 wraps the error a script's command met in a plain ResponseError ("Error running script
# ... @user_script: 1: -READONLY You can't write against a read only replica."). The clients' parser
# unwraps it, so a read-only replica, a full memory or a loading server answers every script (ingest,
# feeds, retention, newsletter) as it answers any command: 503 from the API, a retry in a worker.
_SCRIPT_ERROR = re.compile(r"@user_script: ?\d+: -([A-Z]+) ", re.S)
_SCRIPT_ERRORS = {"READONLY": redis.ReadOnlyError, "OOM": redis.OutOfMemoryError, "LOADING": redis.BusyLoadingError,
                  "MASTERDOWN": redis.exceptions.MasterDownError}


class _ScriptErrors:
    """Parser mixin: the error a script's command met on Redis 6 becomes that command's own error class."""

    @classmethod
    def parse_error(cls, response):
        found = _SCRIPT_ERROR.search(response) if isinstance(response, str) else None
        if found and found.group(1) in _SCRIPT_ERRORS:
            return _SCRIPT_ERRORS[found.group(1)](response)
        return super().parse_error(response)


@functools.lru_cache(maxsize=4)
def parser_class(base: type | None = None) -> type:
    """The parser every store client uses: redis-py's (hiredis when installed) with ``_ScriptErrors``."""
    from redis.connection import DefaultParser

    base = base or DefaultParser
    return type(f"Script{base.__name__.lstrip('_')}", (_ScriptErrors, base), {})


def connect(url: str, decode: bool = True, **kwargs) -> redis.Redis:
    """A client for ``url`` with the store's timeouts and parser (``get_redis`` caches one per process)."""
    options = {"health_check_interval": 30, "socket_timeout": SOCKET_TIMEOUT,
               "socket_connect_timeout": CONNECT_TIMEOUT, "parser_class": parser_class(), **kwargs}
    return redis.Redis.from_url(url, decode_responses=decode, **options)


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
