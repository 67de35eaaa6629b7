"""A write refused inside a Lua script is the refusal itself, on Redis 6.2 (the embedded server) as on 7.

Redis 6.2 wraps the error a script's command met in a plain "Error running script" reply; the
store's client parser unwraps it, so every script (ingest, feeds, retention, newsletter) meets a
read-only replica or a full memory as any command does: the API answers 503, a worker retries.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis

from conftest import free_port, unique_article
from syndicate import events, store
from syndicate.embedded import redis_server_binary
from syndicate.newsletter import editions
from syndicate.store import key

BINARIES = {"shipped": redis_server_binary, "machine": lambda: shutil.which("redis-server")}


@pytest.fixture(params=sorted(BINARIES))
def server(request, tmp_path: Path):
    binary = BINARIES[request.param]()
    if not binary:
        pytest.skip("no redis-server on this machine (apt-get install redis-server); the shipped one is tested")
    port = free_port()
    proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(tmp_path),
                             "--save", "", "--appendonly", "no", "--daemonize", "no"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
    client = store.connect(f"redis://127.0.0.1:{port}/0")
    deadline = time.monotonic() + 15
    while True:
        try:
            if client.ping():
                break
        except redis.ConnectionError:
            assert proc.poll() is None and time.monotonic() < deadline, f"{binary} did not start"
            time.sleep(0.05)
    yield client
    proc.kill()
    proc.wait()


def _refuse_writes(client: redis.Redis, how: str) -> type[Exception]:
    if how == "read-only replica":
        client.replicaof("127.0.0.1", free_port())  # a primary that is not there: writes are refused
        return redis.ReadOnlyError
    client.config_set("maxmemory", 1)  # noeviction (the default): every write is refused
    return redis.OutOfMemoryError


def _scripts(client: redis.Redis):
    """One call of each way the code runs a script, each of which writes."""
    client.hset(key("nl", "list", "morning"), "config", "{}")  # so the edition script reaches its writes
    yield "EVAL", lambda: client.eval("return redis.call('SET', KEYS[1], 'x')", 1, key("probe"))
    yield "EVALSHA", lambda: client.register_script("return redis.call('INCR', KEYS[1])")(keys=[key("probe2")])
    yield "ingest", lambda: events.ingest(unique_article(), client)
    yield "edition", lambda: editions.open_edition("morning.m1", "morning", "2026-11-30T00:00:00Z", "manual",
                                                   time.time(), client)


@pytest.mark.parametrize("how", ["read-only replica", "full memory"])
def test_a_write_refused_inside_a_script_raises_the_refusal(server, how):
    calls = list(_scripts(server))
    refusal = _refuse_writes(server, how)
    assert issubclass(refusal, store.unavailable_errors())  # what the API turns into 503 + Retry-After
    for name, call in calls:
        with pytest.raises(refusal):
            call()
        # a read still works: the client and its connection are fine
        assert server.hget(key("nl", "list", "morning"), "config") == "{}", name


def test_a_script_that_is_wrong_stays_a_plain_error(server):
    server.set(key("probe"), "a string")
    with pytest.raises(redis.ResponseError) as raised:
        server.eval("return redis.call('HSET', KEYS[1], 'f', 'v')", 1, key("probe"))
    assert not isinstance(raised.value, store.unavailable_errors())
    assert "WRONGTYPE" in str(raised.value)
