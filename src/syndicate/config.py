"""Configuration from ``SYNDICATE_*`` environment variables.

Every setting has a default that works on a laptop; the README lists them all.
Settings are read once per process (``get_settings``); tests and ``syndicate run``
set the environment before the first call, and ``reset_settings`` re-reads it.
Unset, the Redis URL and the tokens come from the ``syndicate run`` of the data
directory (``syndicate.instance``), so commands run beside it need no variables.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from urllib.parse import urlsplit

from .errors import ConfigError


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(f"SYNDICATE_{name}")
    return default if value is None or value == "" else value


def _int(name: str, default: int) -> int:
    raw = _env(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"SYNDICATE_{name} must be a whole number, got {raw!r}") from None


def _float(name: str, default: float) -> float:
    raw = _env(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"SYNDICATE_{name} must be a number, got {raw!r}") from None


def _api_workers() -> int:
    workers = _int("API_WORKERS", 1)
    if workers < 1:
        raise ConfigError(f"SYNDICATE_API_WORKERS must be at least 1, got {workers}")
    return workers


def _bool(name: str, default: bool) -> bool:
    raw = _env(name)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"SYNDICATE_{name} must be true or false, got {raw!r}")


def _list(name: str, default: str = "") -> tuple[str, ...]:
    raw = _env(name, default) or ""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


@dataclasses.dataclass(frozen=True)
class Settings:
    # --- core -------------------------------------------------------------
    redis_url: str | None
    redis_prefix: str
    data_dir: Path
    api_token: str | None
    admin_token: str | None
    secret_key: str | None
    public_url: str
    api_host: str
    api_port: int
    api_workers: int  # server processes of `syndicate api`
    max_body_bytes: int
    event_retention_days: int
    reconcile_after_seconds: int
    task_time_limit: int
    visibility_timeout: int
    redis_appendfsync: str
    broker_url: str | None
    broker_delivery_limit: int
    # --- feeds ------------------------------------------------------------
    feed_size: int
    feed_dir: Path
    feed_files: bool  # False: workers write no static files (each web host runs `syndicate feeds mirror`)
    feed_max_age: int
    feed_title: str
    feed_description: str
    site_url: str
    feed_icon: str | None
    websub_hub: str | None
    # --- webhooks ---------------------------------------------------------
    webhook_allow_networks: tuple[str, ...]
    webhook_https_only: bool
    webhook_connect_timeout: float
    webhook_read_timeout: float
    webhook_retry_schedule: tuple[float, ...]
    webhook_rotation_grace_hours: float
    webhook_disable_after_days: float
    delivery_retention_days: int
    webhook_worker_threads: int
    webhook_partner_concurrency: int
    # --- newsletter -------------------------------------------------------
    smtp_url: str
    newsletter_from: str
    smtp_batch_size: int
    smtp_connections: int
    smtp_rate_per_second: float
    smtp_retry_delays: tuple[float, ...]
    newsletter_lease_seconds: float
    newsletter_confirm_hours: float
    newsletter_retention_days: int
    # --- Redis through Sentinel, ingest durability ---------------------------
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str | None = None
    ingest_replicas: int = 0
    ingest_wait_ms: int = 1000
    # --- observability ----------------------------------------------------
    worker_metrics_port: int | None = None
    worker_metrics_host: str = "127.0.0.1"
    metrics_partner_labels: int = 20
    # --- memory -----------------------------------------------------------
    body_margin: int = 50  # stories below each feed window whose bodies are kept too (a refill's reserve)
    newsletter_compact_after_hours: float = 24.0  # then a sent edition keeps counts and problem recipients only

    @property
    def broker_prefix(self) -> str:
        """Celery's queue keys live under their own sub-prefix of the store prefix."""
        return f"{self.redis_prefix}broker:"

    @property
    def broker_is_amqp(self) -> bool:
        """RabbitMQ is the broker (``SYNDICATE_BROKER_URL=amqp://...``); Redis stays the store."""
        return (self.broker_url or "").split(":", 1)[0] in AMQP_SCHEMES


def _retry_schedule() -> tuple[float, ...]:
    raw = _list("WEBHOOK_RETRY_SCHEDULE", "0,5,300,1800,7200,18000,36000,36000")
    try:
        schedule = tuple(float(x) for x in raw)
    except ValueError:
        raise ConfigError(
            "SYNDICATE_WEBHOOK_RETRY_SCHEDULE must be comma-separated seconds, e.g. 0,5,300"
        ) from None
    if not schedule or any(x < 0 for x in schedule):
        raise ConfigError("SYNDICATE_WEBHOOK_RETRY_SCHEDULE needs at least one non-negative delay")
    return schedule


def _delays(name: str, default: str) -> tuple[float, ...]:
    # Newsletter: seconds to wait before each retry pass over transiently failed recipients.
    try:
        delays = tuple(float(x) for x in _list(name, default))
    except ValueError:
        raise ConfigError(f"SYNDICATE_{name} must be comma-separated seconds, e.g. 5,30,120") from None
    if any(x < 0 for x in delays):
        raise ConfigError(f"SYNDICATE_{name} delays must not be negative")
    return delays


AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")


def _broker_url(value: str | None) -> str | None:
    # Unset or a Redis URL: the store's Redis is the broker. amqp://: RabbitMQ, checked at start.
    if value is None:
        return None
    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme not in AMQP_SCHEMES and scheme not in ("redis", "rediss", "unix"):
        shown = repr(value) if "@" not in value else "(not shown: it holds credentials)"
        raise ConfigError(f"SYNDICATE_BROKER_URL {shown} is neither an amqp:// (RabbitMQ) nor a redis:// URL; "
                          "use amqp://user:password@host:5672/vhost, or leave it unset to use the store's Redis")
    return value


def _delivery_limit() -> int:
    limit = _int("BROKER_DELIVERY_LIMIT", 5)
    if limit < 1:
        raise ConfigError(f"SYNDICATE_BROKER_DELIVERY_LIMIT must be at least 1, got {limit}")
    return limit


def _visibility_timeout() -> int:
    # The broker redelivers a message unacknowledged for this long: what a killed worker held comes
    # back after it, and an ETA/countdown message must fire well within it (or it runs twice).
    seconds = _int("VISIBILITY_TIMEOUT", 90)
    if seconds < 10:
        raise ConfigError(f"SYNDICATE_VISIBILITY_TIMEOUT must be at least 10 seconds, got {seconds}")
    return seconds


def _appendfsync() -> str:
    value = (_env("REDIS_APPENDFSYNC", "everysec") or "").lower()
    if value not in ("everysec", "always"):
        raise ConfigError(f"SYNDICATE_REDIS_APPENDFSYNC must be everysec or always, got {value!r}")
    return value


def _base_url(name: str, value: str) -> str:
    # Every self link, feed URL and unsubscribe link is built on these: a typo must stop the start,
    # not reach readers as a broken or javascript: link.
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value):
        raise ConfigError(f"SYNDICATE_{name} must be an absolute http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


def _redis_url(value: str | None) -> str | None:
    # redis-py parses the URL only at the first connection, as a ValueError with a traceback; a
    # malformed URL must stop every command at once with a line that says what to write instead.
    if value is None:
        return None
    from redis.connection import parse_url

    try:
        parse_url(value)
    except ValueError as exc:
        shown = repr(value) if "@" not in value else "(not shown: it holds credentials)"
        raise ConfigError(f"SYNDICATE_REDIS_URL {shown} is not a Redis URL ({exc}); use "
                          "redis://host:6379/0, rediss://user:password@host:6380/0 or unix:///path/redis.sock") from None
    return value


def _bounded(name: str, default: int, low: int, high: int) -> int:
    value = _int(name, default)
    if not low <= value <= high:
        raise ConfigError(f"SYNDICATE_{name} must be between {low} and {high}, got {value}")
    return value


def _sentinels() -> tuple[tuple[tuple[str, int], ...], str | None]:
    # SYNDICATE_REDIS_SENTINELS=host:port,host:port and the master's name: the store (and the broker,
    # when it is Redis) follows whichever server the Sentinels name primary, through a failover.
    raw, master = _list("REDIS_SENTINELS"), _env("REDIS_SENTINEL_MASTER")
    if not raw:
        if master is not None:
            raise ConfigError("SYNDICATE_REDIS_SENTINEL_MASTER is set but SYNDICATE_REDIS_SENTINELS is not; "
                              "list the Sentinels as host:port,host:port or unset it")
        return (), None
    sentinels = []
    for item in raw:
        host, sep, port = item.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or any(c.isspace() for c in item):
            raise ConfigError(f"SYNDICATE_REDIS_SENTINELS entry {item!r} is not host:port; "
                              "write e.g. 10.0.0.5:26379,10.0.0.6:26379,10.0.0.7:26379")
        sentinels.append((host, int(port)))
    if not master or any(c.isspace() for c in master):
        raise ConfigError("SYNDICATE_REDIS_SENTINELS is set, so SYNDICATE_REDIS_SENTINEL_MASTER must name the "
                          f"master the Sentinels monitor (`sentinel monitor NAME ...`), got {master!r}")
    return tuple(sentinels), master


def sentinel_url(sentinels: tuple[tuple[str, int], ...], redis_url: str | None = None) -> str:
    """``sentinel://h1:p1/db;sentinel://h2:p2/db`` (kombu's form), with the user, password and database
    of ``SYNDICATE_REDIS_URL`` when it is set (its host is then ignored: the Sentinels name the primary)."""
    auth, db = "", 0
    if redis_url:
        from urllib.parse import quote

        from redis.connection import parse_url

        parts = parse_url(redis_url)
        db = int(parts.get("db") or 0)
        if parts.get("password") is not None:
            auth = f"{quote(parts.get('username') or '', safe='')}:{quote(parts['password'], safe='')}@"
    hosts = [f"[{h}]" if ":" in h else h for h, _ in sentinels]
    return ";".join(f"sentinel://{auth}{h}:{p}/{db}" for h, (_, p) in zip(hosts, sentinels))


def _smtp_url(value: str) -> str:
    # Checked here, not at the first email: a typo shows at start, not in a worker's log hours later.
    from .newsletter.smtpurl import parse_smtp_url

    parse_smtp_url(value)
    return value


def data_dir() -> Path:
    return Path(_env("DATA_DIR", "var")).resolve()


def default_public_url(host: str, port: int) -> str:
    """The API's own address: what readers reach when nothing sits in front of it."""
    # A wildcard bind is no address a reader can use; loopback at least works on this machine.
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def start_warnings(settings: Settings) -> list[str]:
    """Lines worth showing when the API starts: settings that work but will surprise readers."""
    import ipaddress

    lines = []
    parts = urlsplit(settings.public_url)
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme == "http" and not loopback:
        lines.append(f"warning: SYNDICATE_PUBLIC_URL {settings.public_url} is plain http: mail clients offer "
                     "one-click unsubscribe (RFC 8058) only over https; serve the API behind TLS and set "
                     "SYNDICATE_PUBLIC_URL=https://...")
    if _env("PUBLIC_URL") is None and settings.api_host in ("0.0.0.0", "::"):
        lines.append(f"warning: the API listens on all interfaces but SYNDICATE_PUBLIC_URL is not set, so feed "
                     f"and unsubscribe links point at {settings.public_url}; set it to the address readers use")
    return lines


def load_settings() -> Settings:
    from . import instance

    data = data_dir()
    api_host = _env("API_HOST", "127.0.0.1")
    api_port = _int("API_PORT", 8000)
    public_url = _base_url("PUBLIC_URL", _env("PUBLIC_URL") or default_public_url(api_host, api_port))
    prefix = _env("REDIS_PREFIX", "syndicate:")
    if not prefix.endswith(":"):
        prefix += ":"
    # An explicit variable always wins; otherwise the `syndicate run` of this data dir, if any.
    redis_url = _redis_url(_env("REDIS_URL"))
    sentinels, sentinel_master = _sentinels()
    if sentinels:
        redis_url = sentinel_url(sentinels, redis_url)
    found = instance.discover(data) if redis_url is None else None
    if found:
        redis_url = _redis_url(found["redis_url"])
    smtp_default = (found or {}).get("smtp_url") or "smtp://127.0.0.1:1025"
    kept = instance.load_secrets(data)
    return Settings(
        redis_url=redis_url,
        redis_prefix=prefix,
        data_dir=data,
        api_token=_env("API_TOKEN") or kept.get("SYNDICATE_API_TOKEN"),
        admin_token=_env("ADMIN_TOKEN") or kept.get("SYNDICATE_ADMIN_TOKEN"),
        secret_key=_env("SECRET_KEY") or kept.get("SYNDICATE_SECRET_KEY"),
        public_url=public_url,
        api_host=api_host,
        api_port=api_port,
        api_workers=_api_workers(),
        max_body_bytes=_int("MAX_BODY_BYTES", 1024 * 1024),
        event_retention_days=_int("EVENT_RETENTION_DAYS", 30),
        reconcile_after_seconds=_int("RECONCILE_AFTER_SECONDS", 60),
        task_time_limit=_int("TASK_TIME_LIMIT", 300),
        visibility_timeout=_visibility_timeout(),
        redis_appendfsync=_appendfsync(),
        broker_url=_broker_url(_env("BROKER_URL")),
        broker_delivery_limit=_delivery_limit(),
        feed_size=_int("FEED_SIZE", 50),
        feed_dir=Path(_env("FEED_DIR") or str(data / "feeds")).resolve(),
        feed_files=_bool("FEED_FILES", True),
        feed_max_age=_int("FEED_MAX_AGE", 60),
        feed_title=_env("FEED_TITLE", "Syndicate News"),
        feed_description=_env("FEED_DESCRIPTION", "The latest stories"),
        site_url=_base_url("SITE_URL", _env("SITE_URL") or public_url),
        feed_icon=_env("FEED_ICON"),
        websub_hub=_env("WEBSUB_HUB"),
        webhook_allow_networks=_list("WEBHOOK_ALLOW_NETWORKS"),
        webhook_https_only=_bool("WEBHOOK_HTTPS_ONLY", False),
        webhook_connect_timeout=_float("WEBHOOK_CONNECT_TIMEOUT", 5.0),
        webhook_read_timeout=_float("WEBHOOK_READ_TIMEOUT", 15.0),
        webhook_retry_schedule=_retry_schedule(),
        webhook_rotation_grace_hours=_float("WEBHOOK_ROTATION_GRACE_HOURS", 24.0),
        webhook_disable_after_days=_float("WEBHOOK_DISABLE_AFTER_DAYS", 5.0),
        delivery_retention_days=_int("DELIVERY_RETENTION_DAYS", 30),
        webhook_worker_threads=max(_int("WEBHOOK_WORKER_THREADS", 32), 1),
        webhook_partner_concurrency=max(_int("WEBHOOK_PARTNER_CONCURRENCY", 4), 1),
        smtp_url=_smtp_url(_env("SMTP_URL", smtp_default)),
        newsletter_from=_env("NEWSLETTER_FROM", "Syndicate News <newsletter@localhost>"),
        smtp_batch_size=_int("SMTP_BATCH_SIZE", 100),
        smtp_connections=max(_int("SMTP_CONNECTIONS", 1), 1),
        smtp_rate_per_second=_float("SMTP_RATE_PER_SECOND", 0.0),
        smtp_retry_delays=_delays("SMTP_RETRY_DELAYS", "5,30,120"),
        newsletter_lease_seconds=_float("NEWSLETTER_LEASE_SECONDS", 60.0),
        newsletter_confirm_hours=_float("NEWSLETTER_CONFIRM_HOURS", 48.0),
        newsletter_retention_days=_int("NEWSLETTER_RETENTION_DAYS", 90),
        redis_sentinels=sentinels,
        redis_sentinel_master=sentinel_master,
        ingest_replicas=_bounded("INGEST_REPLICAS", 0, 0, 16),
        ingest_wait_ms=_bounded("INGEST_WAIT_MS", 1000, 1, 60_000),
        worker_metrics_port=_int("WORKER_METRICS_PORT", 0) or None,
        worker_metrics_host=_env("WORKER_METRICS_HOST", "127.0.0.1"),
        metrics_partner_labels=max(_int("METRICS_PARTNER_LABELS", 20), 0),
        body_margin=max(_int("BODY_MARGIN", _int("FEED_SIZE", 50)), 0),
        newsletter_compact_after_hours=max(_float("NEWSLETTER_COMPACT_AFTER_HOURS", 24.0), 0.0),
    )


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


def reset_settings() -> None:
    get_settings.cache_clear()
