"""How commands find a running instance, and how workers say they are alive.

Instance file: while ``syndicate run`` runs it keeps ``{data_dir}/instance.json``
(mode 0600: it may hold a Redis password) with the Redis URL, the API URL, the
SMTP URL of its local mailbox and its pid, and removes it at exit. Settings use
it as the default of ``SYNDICATE_REDIS_URL`` (and ``SYNDICATE_SMTP_URL``), so a
command run in the same folder, or with the same ``SYNDICATE_DATA_DIR``, reaches
that instance without a pasted port. A file whose run is gone (killed with -9)
or whose Redis does not answer is ignored, with a one-line hint on stderr.

Secrets: ``{data_dir}/secrets.json`` holds the tokens ``syndicate run`` generated;
settings read them when the variables are not set.

Heartbeats: each worker process records ``{name: {"at", "pid", "queues"}}`` in
the hash ``{prefix}workers:heartbeat`` every ``HEARTBEAT_INTERVAL`` seconds, timed
by the Redis server's clock so hosts with skewed clocks agree; ``/readyz`` counts
a worker alive when its entry is younger than ``HEARTBEAT_MAX_AGE``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

INSTANCE_FILE = "instance.json"
SECRETS_FILE = "secrets.json"

HEARTBEAT_INTERVAL = 10.0
HEARTBEAT_MAX_AGE = 30.0
# Entries of workers that vanished without a clean shutdown are dropped after a day, so the hash
# stays as small as the set of recent worker names.
HEARTBEAT_FORGET_AFTER = 86400.0

_hinted: set[str] = set()


def instance_path(data_dir: Path) -> Path:
    return Path(data_dir) / INSTANCE_FILE


def write(data_dir: Path, **fields: object) -> Path:
    """Write the instance file atomically, readable by its owner only."""
    path = instance_path(data_dir)
    tmp = path.with_name(f".{INSTANCE_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"pid": os.getpid(), **fields}, handle, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def remove(data_dir: Path) -> None:
    """Remove the instance file if this process wrote it (a newer run's file stays)."""
    path = instance_path(data_dir)
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def _hint(path: Path, reason: str) -> None:
    # Once per process and file: settings can be loaded more than once.
    if str(path) in _hinted:
        return
    _hinted.add(str(path))
    print(f"note: ignoring {path}: {reason}; start `syndicate run` here or set SYNDICATE_REDIS_URL",
          file=sys.stderr)


def discover(data_dir: Path) -> dict | None:
    """The live instance recorded in ``data_dir``, or None (no file, or a stale one)."""
    path = instance_path(data_dir)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        _hint(path, f"it cannot be read ({exc})")
        return None
    if not isinstance(record, dict) or not isinstance(record.get("redis_url"), str):
        _hint(path, "it names no Redis URL")
        return None
    if not _pid_alive(record.get("pid")):
        _hint(path, f"the syndicate run that wrote it (pid {record.get('pid')}) is gone")
        return None
    from .embedded import redis_reachable

    if record["redis_url"].startswith("sentinel://"):
        _hint(path, "its Redis is found through Sentinels; set SYNDICATE_REDIS_SENTINELS and "
                    "SYNDICATE_REDIS_SENTINEL_MASTER as that syndicate run has them")
        return None
    if not redis_reachable(record["redis_url"]):
        _hint(path, f"the Redis of the syndicate run with pid {record['pid']} does not answer")
        return None
    return record


def load_secrets(data_dir: Path) -> dict[str, str]:
    """The tokens kept in ``{data_dir}/secrets.json`` ({} when there is none)."""
    path = Path(data_dir) / SECRETS_FILE
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        from .errors import ConfigError

        raise ConfigError(f"{path} cannot be read ({exc}); fix it, or delete it and restart "
                          "`syndicate run` to generate new tokens") from None
    return {k: v for k, v in values.items() if isinstance(v, str)} if isinstance(values, dict) else {}


# --- worker heartbeats ------------------------------------------------------------------------


def _heartbeat_key() -> str:
    from .store import key

    return key("workers", "heartbeat")


def beat(name: str, queues: tuple[str, ...] | list[str] = ()) -> None:
    """Record one heartbeat of worker ``name`` now."""
    from .store import get_redis

    client = get_redis()
    now = _server_time(client)
    entry = json.dumps({"at": now, "pid": os.getpid(), "queues": sorted(queues)})
    client.hset(_heartbeat_key(), name, entry)
    stale = [n for n, e in _entries(client).items() if now - e["at"] > HEARTBEAT_FORGET_AFTER]
    if stale:
        client.hdel(_heartbeat_key(), *stale)


def _server_time(client) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1e6


def _entries(client) -> dict[str, dict]:
    entries = {}
    for name, raw in client.hgetall(_heartbeat_key()).items():
        try:
            entry = json.loads(raw)
            entries[name] = {"at": float(entry["at"]), "queues": list(entry.get("queues") or [])}
        except (ValueError, KeyError, TypeError):
            continue  # an entry this version cannot read is no proof of life
    return entries


def live_workers(client) -> dict[str, dict]:
    """Workers heard from within ``HEARTBEAT_MAX_AGE``: name -> {"age": seconds, "queues": [...]}."""
    now = _server_time(client)
    return {name: {"age": round(now - e["at"], 1), "queues": e["queues"]}
            for name, e in _entries(client).items() if now - e["at"] <= HEARTBEAT_MAX_AGE}


class Heartbeat:
    """A daemon thread that records a heartbeat every ``interval`` seconds until ``stop()``."""

    def __init__(self, name: str, queues: tuple[str, ...] | list[str], interval: float) -> None:
        self.name = name
        self.queues = tuple(queues)
        self.interval = interval
        self._stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"heartbeat-{name}", daemon=True)

    def _run(self) -> None:
        from .store import unavailable_errors

        while not self._stopped.is_set():
            try:
                beat(self.name, self.queues)
            except unavailable_errors():
                pass  # Redis is down: /readyz says so itself; the next beat catches up.
            self._stopped.wait(self.interval)

    def stop(self) -> None:
        """Stop beating and forget this worker, so readiness drops as soon as it shuts down."""
        from .store import get_redis, unavailable_errors

        self._stopped.set()
        self.thread.join(5)
        try:
            get_redis().hdel(_heartbeat_key(), self.name)
        except unavailable_errors():
            pass  # the entry expires from /readyz's view after HEARTBEAT_MAX_AGE anyway


_running: list[Heartbeat] = []


def start_heartbeat(name: str, queues: tuple[str, ...] | list[str] = (),
                    interval: float = HEARTBEAT_INTERVAL) -> Heartbeat:
    """Start recording heartbeats for worker ``name`` (called from Celery's worker_ready signal).

    Starting the same name twice in one process returns the running heartbeat.
    """
    for running in _running:
        if running.name == name:
            return running
    heartbeat = Heartbeat(name, queues, interval)
    _running.append(heartbeat)
    heartbeat.thread.start()
    return heartbeat


def stop_heartbeats() -> None:
    """Stop every heartbeat this process started (called from Celery's worker_shutdown signal)."""
    while _running:
        _running.pop().stop()
