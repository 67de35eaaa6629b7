"""A new deployment serves the main feed (all three formats) as a valid empty feed before its first story.

Each test runs the real `syndicate` processes (CLI, worker, API) against a fresh Redis key prefix, so
"new deployment" really is empty whatever the other tests of this run have published.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import feedparser
import jsonschema
import pytest
import requests
from lxml import etree

from conftest import free_port, wait_for

from syndicate.store import delete_prefix

SYNDICATE = Path(sys.executable).with_name("syndicate")
SCHEMA = json.loads((Path(__file__).parent / "data" / "jsonfeed-1.1.schema.json").read_text())
TYPES = {"rss": "application/rss+xml", "atom": "application/atom+xml", "json": "application/feed+json"}


@pytest.fixture()
def fresh_env(redis_client, tmp_path):
    prefix = f"syntest:empty-{uuid.uuid4().hex[:8]}:"
    env = {**os.environ, "SYNDICATE_REDIS_PREFIX": prefix, "SYNDICATE_FEED_DIR": str(tmp_path / "feeds"),
           "SYNDICATE_DATA_DIR": str(tmp_path / "data")}
    yield env
    delete_prefix(redis_client, prefix)


def main_doc_exists(redis_client, env) -> bool:
    return redis_client.hexists(f"{env['SYNDICATE_REDIS_PREFIX']}feeds:doc:all", "json:etag")


def run_python(env, code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def assert_valid_empty(body: bytes, fmt: str) -> None:
    if fmt == "json":
        doc = json.loads(body)
        jsonschema.Draft202012Validator(SCHEMA).validate(doc)
        assert doc["items"] == [] and doc["feed_url"].endswith("/feeds/all.json")
        return
    etree.fromstring(body)
    parsed = feedparser.parse(body)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert parsed.entries == [] and parsed.feed.title


@pytest.fixture()
def api(fresh_env):
    port = free_port()
    proc = subprocess.Popen([str(SYNDICATE), "api", "--host", "127.0.0.1", "--port", str(port)], env=fresh_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(f"{base}/feeds", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_for(up, timeout=30, message="API subprocess up")
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_rebuild_on_a_new_deployment_serves_an_empty_main_feed(fresh_env, api, redis_client, http):
    # Before the worker side has run, the API answers 404: it never renders per request.
    assert http.get(f"{api}/feeds/all.rss").status_code == 404

    done = subprocess.run([str(SYNDICATE), "feeds", "rebuild"], env=fresh_env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "rebuilt 1 feed(s)" in done.stdout

    feed_dir = Path(fresh_env["SYNDICATE_FEED_DIR"])
    for fmt in ("rss", "atom", "json"):
        response = http.get(f"{api}/feeds/all.{fmt}")
        assert response.status_code == 200, (fmt, response.text)
        assert response.headers["Content-Type"].startswith(TYPES[fmt])
        assert_valid_empty(response.content, fmt)
        etag = response.headers["ETag"]
        assert http.get(f"{api}/feeds/all.{fmt}", headers={"If-None-Match": etag}).status_code == 304
        head = http.head(f"{api}/feeds/all.{fmt}")
        assert head.status_code == 200 and head.headers["ETag"] == etag
        assert (feed_dir / f"all.{fmt}").read_bytes() == response.content
    # Section feeds still appear only with their first story.
    assert http.get(f"{api}/feeds/sections/us.rss").status_code == 404
    assert [f["id"] for f in http.get(f"{api}/feeds").json()["feeds"]] == ["all"]


def test_the_sweep_renders_a_missing_main_feed_once(fresh_env, redis_client):
    assert not main_doc_exists(redis_client, fresh_env)
    sweep = "from syndicate.feeds import service; print(service.sweep())"
    assert run_python(fresh_env, sweep) == "['all']"
    assert main_doc_exists(redis_client, fresh_env)
    assert run_python(fresh_env, sweep) == "[]"  # rendered once: later sweeps leave it alone
    renders = redis_client.hget(f"{fresh_env['SYNDICATE_REDIS_PREFIX']}feeds:doc:all", "renders")
    assert renders == "1"
    for fmt in ("rss", "atom", "json"):
        assert_valid_empty((Path(fresh_env["SYNDICATE_FEED_DIR"]) / f"all.{fmt}").read_bytes(), fmt)


def test_a_starting_feeds_worker_renders_the_main_feed(fresh_env, redis_client):
    proc = subprocess.Popen([str(SYNDICATE), "worker", "-Q", "feeds", "-c", "1", "--loglevel", "WARNING",
                             "-n", f"feeds-empty-{uuid.uuid4().hex[:6]}@%h"], env=fresh_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: main_doc_exists(redis_client, fresh_env), timeout=60,
                 message="the main feed rendered by the worker's start-up sweep")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
