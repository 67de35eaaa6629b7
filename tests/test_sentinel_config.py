"""Redis through Sentinel: the settings, and the clients finding the primary through real Sentinels (issue 9).

The live tests run their own primary, replica and Sentinel on loopback ports
(``faults_harness.SentinelGroup``) and point this process's settings at them.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
import redis
import requests

from conftest import INGEST_AUTH, ROOT, ServerThread, free_port, unique_article
from faults_harness import SentinelGroup

from syndicate.config import load_settings, reset_settings
from syndicate.errors import ConfigError


def _use(monkeypatch, **env: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_settings()


@pytest.fixture(autouse=True)
def _fresh_clients():
    from syndicate import store

    store._client.cache_clear()
    yield
    reset_settings()
    store._client.cache_clear()


def test_sentinels_and_master_become_the_store_address(monkeypatch):
    monkeypatch.setenv("SYNDICATE_REDIS_SENTINELS", "10.0.0.5:26379, 10.0.0.6:26380,[::1]:26381")
    monkeypatch.setenv("SYNDICATE_REDIS_SENTINEL_MASTER", "news")
    monkeypatch.setenv("SYNDICATE_REDIS_URL", "redis://app:s%40cret@ignored:6379/3")
    settings = load_settings()
    assert settings.redis_sentinels == (("10.0.0.5", 26379), ("10.0.0.6", 26380), ("::1", 26381))
    assert settings.redis_sentinel_master == "news"
    # The URL's host is ignored; its user, password and database are the primary's.
    assert settings.redis_url == ("sentinel://app:s%40cret@10.0.0.5:26379/3;sentinel://app:s%40cret@10.0.0.6:26380/3;"
                                  "sentinel://app:s%40cret@[::1]:26381/3")
    from syndicate.store import _master_kwargs

    assert _master_kwargs(settings.redis_url) == {"db": 3, "username": "app", "password": "s@cret"}


def test_without_sentinels_nothing_changes(monkeypatch):
    monkeypatch.delenv("SYNDICATE_REDIS_SENTINELS", raising=False)
    monkeypatch.delenv("SYNDICATE_REDIS_SENTINEL_MASTER", raising=False)
    settings = load_settings()
    assert settings.redis_sentinels == () and settings.redis_url == os.environ["SYNDICATE_REDIS_URL"]
    assert settings.ingest_replicas == 0 and settings.ingest_wait_ms == 1000


@pytest.mark.parametrize(("env", "named"), [
    ({"SYNDICATE_REDIS_SENTINELS": "10.0.0.5"}, "SYNDICATE_REDIS_SENTINELS"),
    ({"SYNDICATE_REDIS_SENTINELS": "10.0.0.5:port"}, "SYNDICATE_REDIS_SENTINELS"),
    ({"SYNDICATE_REDIS_SENTINELS": "10.0.0.5:70000"}, "SYNDICATE_REDIS_SENTINELS"),
    ({"SYNDICATE_REDIS_SENTINELS": ":26379"}, "SYNDICATE_REDIS_SENTINELS"),
    ({"SYNDICATE_REDIS_SENTINELS": "10.0.0.5:26379"}, "SYNDICATE_REDIS_SENTINEL_MASTER"),
    ({"SYNDICATE_REDIS_SENTINEL_MASTER": "news"}, "SYNDICATE_REDIS_SENTINELS"),
    ({"SYNDICATE_INGEST_REPLICAS": "-1"}, "SYNDICATE_INGEST_REPLICAS"),
    ({"SYNDICATE_INGEST_REPLICAS": "one"}, "SYNDICATE_INGEST_REPLICAS"),
    ({"SYNDICATE_INGEST_WAIT_MS": "0"}, "SYNDICATE_INGEST_WAIT_MS"),
])
def test_bad_sentinel_settings_are_refused_naming_the_variable(monkeypatch, env, named):
    monkeypatch.delenv("SYNDICATE_REDIS_SENTINELS", raising=False)
    monkeypatch.delenv("SYNDICATE_REDIS_SENTINEL_MASTER", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=named):
        load_settings()


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "syndicate.cli.main", *args], env=full, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_cli_refuses_a_malformed_sentinel_list_in_one_line():
    done = _cli("status", SYNDICATE_REDIS_SENTINELS="10.0.0.5;10.0.0.6", SYNDICATE_REDIS_SENTINEL_MASTER="news")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "SYNDICATE_REDIS_SENTINELS" in lines[0] and "host:port" in lines[0], done.stderr


def test_cli_with_no_sentinel_answering_says_so_in_one_line_exit_1():
    done = _cli("status", SYNDICATE_REDIS_SENTINELS=f"127.0.0.1:{free_port()}",
                SYNDICATE_REDIS_SENTINEL_MASTER="news")
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "unavailable" in lines[0] and "Traceback" not in done.stderr, done.stderr


# --- against real Sentinels -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    group = SentinelGroup(tmp_path_factory.mktemp("sentinel"), sentinels=1)
    try:
        yield group.start()
    finally:
        group.close()


def test_the_store_client_writes_to_the_primary_the_sentinels_name(monkeypatch, group):
    from syndicate.store import get_redis, key

    _use(monkeypatch, **group.env)
    get_redis().set(key("sentinel-probe"), "here")
    primary = redis.Redis(port=group.primary.port, decode_responses=True)
    assert primary.get(key("sentinel-probe")) == "here"

    async def read() -> bytes | None:
        from syndicate.store import async_client

        client = async_client()
        try:
            return await client.get(key("sentinel-probe"))
        finally:
            await client.aclose()

    assert asyncio.run(read()) == b"here"


def test_the_broker_publishes_to_the_primary_through_the_sentinel_transport(monkeypatch, group):
    from syndicate.workers.app import make_app

    _use(monkeypatch, **group.env)
    settings = load_settings()
    app = make_app(settings)
    assert app.conf.broker_transport_options["master_name"] == group.MASTER
    with app.connection_for_write() as connection:
        assert type(connection.transport).__name__ == "SentinelBrokerTransport"
        app.send_task("syndicate.ingest.fanout", args=["evt_sentinel"], queue="ingest", connection=connection)
    primary = redis.Redis(port=group.primary.port, decode_responses=True)
    waiting = primary.lrange(f"{settings.broker_prefix}ingest", 0, -1)
    assert any(json.loads(m)["headers"]["task"] == "syndicate.ingest.fanout" for m in waiting), waiting


def test_with_ingest_replicas_1_the_replica_holds_the_article_before_the_answer(monkeypatch, group):
    from syndicate import events
    from syndicate.store import key

    _use(monkeypatch, **group.env, SYNDICATE_INGEST_REPLICAS="1")
    article = unique_article()
    result = events.ingest(article)
    assert result.outcome == "event"
    replica = redis.Redis(port=group.replica.port, decode_responses=True)
    assert replica.hget(key("article", article["id"]), "event_id") == result.event_id
    assert replica.get(key("event", result.event_id)) is not None


def test_too_few_replicas_answers_503_with_retry_after_and_the_retry_too(monkeypatch, group):
    from syndicate.api import create_app

    _use(monkeypatch, **group.env, SYNDICATE_INGEST_REPLICAS="2", SYNDICATE_INGEST_WAIT_MS="200")
    article = unique_article()
    with ServerThread(create_app()) as server:
        for attempt in range(2):  # the second is a duplicate of a write that may be kept: still not confirmed
            response = requests.post(f"{server.url}/v1/articles", json=article, headers=INGEST_AUTH, timeout=30)
            assert response.status_code == 503, (attempt, response.text)
            assert response.headers["Retry-After"].isdigit()
            assert response.json()["error"] == "store_unavailable"
