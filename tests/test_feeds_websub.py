"""WebSub against a real local hub that records pings: discovery links, coalesced pings, retry after failure."""

from __future__ import annotations

import os
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from conftest import free_port, wait_for
from feeds_fixtures import dated_story, post, unique_section

from syndicate.config import get_settings, reset_settings
from syndicate.feeds import slugify, websub


class Hub:
    """A WebSub hub on loopback: answers 503 to the first ``fail_first`` pings, 204 after."""

    def __init__(self, fail_first: int = 1) -> None:
        self.pings: list[dict[str, list[str]]] = []
        self.content_types: list[str | None] = []
        self.failures_left = fail_first
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode(), strict_parsing=True)
                hub.pings.append(form)
                hub.content_types.append(self.headers.get("Content-Type"))
                failing = hub.failures_left > 0
                hub.failures_left -= 1
                self.send_response(503 if failing else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hub"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def topics(self) -> list[str]:
        return [form["hub.url"][0] for form in self.pings if form.get("hub.mode") == ["publish"]]


@pytest.fixture()
def hub():
    hub = Hub(fail_first=1)
    os.environ["SYNDICATE_WEBSUB_HUB"] = hub.url
    reset_settings()
    try:
        yield hub
    finally:
        os.environ.pop("SYNDICATE_WEBSUB_HUB", None)
        reset_settings()
        hub.server.shutdown()


def test_hub_is_advertised_and_pinged_after_changes(hub, api_server, celery_worker, http):
    section = unique_section("Hub")
    slug = slugify(section)
    article = dated_story(section)
    post(http, api_server, article)
    public = get_settings().public_url
    expected = {f"{public}/feeds/{feed}.{fmt}" for feed in ("all", f"sections/{slug}") for fmt in ("rss", "atom", "json")}

    # The first ping fails (503); it is retried, and every changed feed URL reaches the hub.
    wait_for(lambda: expected <= set(hub.topics()) and hub.topics().count(hub.topics()[0]) >= 2,
             timeout=30, message="publish pings for all six feed URLs, the failed one retried")
    # Coalesced: one story costs one ping per URL (plus the one retry), not one per render or format pass.
    section_pings = [t for t in hub.topics() if f"/sections/{slug}." in t]
    assert len(section_pings) <= 3 + 1
    # Each ping is a form POST (WebSub §7 / PubSubHubbub 0.4): hub.mode=publish and one hub.url.
    assert set(hub.content_types) == {"application/x-www-form-urlencoded"}
    for form in hub.pings:
        assert form["hub.mode"] == ["publish"] and len(form["hub.url"]) == 1 and set(form) == {"hub.mode", "hub.url"}

    url = f"{api_server}/feeds/sections/{slug}.atom"
    wait_for(lambda: http.get(url).status_code == 200, message="section feed served")
    response = http.get(url)
    assert response.headers["Link"] == f'<{hub.url}>; rel="hub", <{public}/feeds/sections/{slug}.atom>; rel="self"'
    # Discovery works from HEAD too, and on every format; the self link names the format asked for.
    for fmt in ("rss", "atom", "json"):
        for method in (http.get, http.head):
            links = requests.utils.parse_header_links(method(f"{api_server}/feeds/all.{fmt}").headers["Link"])
            assert {(link["rel"], link["url"]) for link in links} == {
                ("hub", hub.url), ("self", f"{public}/feeds/all.{fmt}")}, (method, fmt)
    not_modified = http.get(url, headers={"If-None-Match": response.headers["ETag"]})
    assert not_modified.status_code == 304 and not_modified.headers["Link"] == response.headers["Link"]
    assert f'href="{hub.url}" rel="hub"'.encode() in response.content
    rss = http.get(f"{api_server}/feeds/sections/{slug}.rss").content
    assert f'href="{hub.url}" rel="hub"'.encode() in rss
    assert http.get(f"{api_server}/feeds/sections/{slug}.json").json()["hubs"] == [{"type": "WebSub", "url": hub.url}]


def test_no_hub_no_link_header(api_server, celery_worker, http):
    section = unique_section("NoHub")
    post(http, api_server, dated_story(section))
    url = f"{api_server}/feeds/sections/{slugify(section)}.rss"
    wait_for(lambda: http.get(url).status_code == 200, message="section feed served")
    response = http.get(url)
    assert "Link" not in response.headers and b'rel="hub"' not in response.content


def test_no_feeds_countdown_or_eta_exceeds_60_seconds():
    """The Redis broker redelivers an unacked ETA task after its visibility timeout: long waits must not
    be Celery countdowns. Retries of apply_event back off 1, 2, 4, 8, 16 s; websub_flush caps at 60 s and
    keeps longer WebSub backoffs in the Redis schedule instead."""
    import inspect
    import re

    import syndicate.workers.feeds as tasks

    task = tasks.apply_event
    assert task.retry_backoff and task.retry_backoff_max <= 60
    assert 2 ** task.max_retries <= 60 or task.retry_backoff_max <= 60
    source = inspect.getsource(tasks)
    assert "eta=" not in source
    calls = [line.strip() for line in source.splitlines() if "countdown=" in line]
    assert calls == ["websub_flush.apply_async(countdown=min(min(retry_in), max_countdown()))"]
    assert all(not re.search(r"countdown=\d", line) for line in calls)
    assert max(websub.BACKOFF) > 60  # longer waits exist, and they live in the Redis schedule instead


LEASE_SCRIPT = """
import json, time
from syndicate.feeds import websub
from syndicate.store import get_redis, key
r = get_redis()
pending = key("feeds", "websub", "pending")
out = {}
websub.queue(r, ["https://x/a.rss", "https://x/b.rss", "https://x/c.rss", "https://x/d.rss"])
claims = {c.topic: c for c in websub.take_due(r)}
out["claimed"] = sorted(claims)
out["claimed_again"] = [c.topic for c in websub.take_due(r)]  # leased: not due twice
out["lease_ahead"] = r.zscore(pending, "https://x/a.rss") > time.time() + 60
ok = lambda t: websub.PingOutcome(t, True, 204)
websub.record(r, claims["https://x/a.rss"], ok("https://x/a.rss"))
websub.queue(r, ["https://x/b.rss"])  # b changed again while its ping was in flight
websub.record(r, claims["https://x/b.rss"], ok("https://x/b.rss"))
delay = websub.record(r, claims["https://x/c.rss"], websub.PingOutcome("https://x/c.rss", False, 503, "busy"))
out["left"] = sorted(r.zrange(pending, 0, -1))
out["b_due_now"] = r.zscore(pending, "https://x/b.rss") <= time.time()
out["c_retry"] = [delay, round(r.zscore(pending, "https://x/c.rss") - time.time())]
# d's flush "died" after claiming it: once the lease runs out, d is due again (with b and c).
dead = websub.take_due(r, now=time.time() + websub.LEASE_SECONDS + 1)
out["after_lease"] = sorted(c.topic for c in dead)
print(json.dumps(out))
"""


def test_websub_claims_are_leased_and_a_change_during_a_ping_is_not_swallowed(redis_client):
    """Against real Redis under a fresh key prefix (a subprocess), so no worker of this run can take the topics."""
    import json
    import subprocess
    import sys
    import uuid

    from syndicate.store import delete_prefix

    prefix = f"syntest:websub-{uuid.uuid4().hex[:8]}:"
    try:
        done = subprocess.run([sys.executable, "-c", LEASE_SCRIPT], env={**os.environ, "SYNDICATE_REDIS_PREFIX": prefix},
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
    finally:
        delete_prefix(redis_client, prefix)
    assert out["claimed"] == ["https://x/a.rss", "https://x/b.rss", "https://x/c.rss", "https://x/d.rss"]
    assert out["claimed_again"] == [] and out["lease_ahead"]
    # a: pinged, gone. b: re-queued by a newer change, so still pending and due now. c: failed, retried later.
    assert out["left"] == ["https://x/b.rss", "https://x/c.rss", "https://x/d.rss"] and out["b_due_now"]
    assert out["c_retry"][0] == websub.BACKOFF[0] and 0 <= out["c_retry"][1] <= websub.BACKOFF[0]
    assert out["after_lease"] == ["https://x/b.rss", "https://x/c.rss", "https://x/d.rss"]
