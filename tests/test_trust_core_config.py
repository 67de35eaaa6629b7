"""The documented defaults of the fault settings, read from the real configuration (issue 8)."""

from __future__ import annotations

import pytest
import redis

from syndicate.config import load_settings
from syndicate.embedded import EmbeddedRedis
from syndicate.errors import ConfigError
from syndicate.workers.app import RESTORE_INTERVAL, app, celery_config


def test_defaults_visibility_timeout_90_s_and_appendfsync_everysec(monkeypatch):
    monkeypatch.delenv("SYNDICATE_VISIBILITY_TIMEOUT", raising=False)
    monkeypatch.delenv("SYNDICATE_REDIS_APPENDFSYNC", raising=False)
    settings = load_settings()
    assert settings.visibility_timeout == 90
    assert settings.redis_appendfsync == "everysec"
    options = celery_config(settings)["broker_transport_options"]
    assert options["visibility_timeout"] == 90
    # A killed worker's messages come back within visibility + one sweep: under two minutes.
    assert options["unacked_restore_interval"] == RESTORE_INTERVAL and options["unacked_restore_throttle"] == 1
    assert options["visibility_timeout"] + RESTORE_INTERVAL < 120


@pytest.mark.parametrize(("name", "value"), [("VISIBILITY_TIMEOUT", "5"), ("VISIBILITY_TIMEOUT", "soon"),
                                             ("REDIS_APPENDFSYNC", "no"), ("REDIS_APPENDFSYNC", "sometimes")])
def test_bad_fault_settings_are_refused_with_a_message(monkeypatch, name, value):
    monkeypatch.setenv(f"SYNDICATE_{name}", value)
    with pytest.raises(ConfigError, match=f"SYNDICATE_{name}"):
        load_settings()


def test_the_running_app_uses_the_settings_and_the_crash_safe_transport():
    options = app.conf.broker_transport_options
    assert options["visibility_timeout"] == load_settings().visibility_timeout
    assert app.conf.broker_transport == "syndicate.workers.app:BrokerTransport"
    with app.connection_for_write() as connection:
        assert type(connection.transport).__name__ == "BrokerTransport"


def test_beat_runs_the_reconciler_every_30_seconds():
    entry = app.conf.beat_schedule["reconcile-events"]
    assert entry["task"] == "syndicate.ingest.reconcile" and entry["schedule"] == 30.0
    assert entry["task"] in app.tasks


@pytest.mark.parametrize("policy", ["everysec", "always"])
def test_the_embedded_redis_runs_with_the_chosen_fsync_policy(tmp_path, policy):
    with EmbeddedRedis(tmp_path / "redis", appendfsync=policy) as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        assert client.config_get("appendfsync") == {"appendfsync": policy}
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        client.close()
