"""WebSub against a real local hub that records pings: discovery links, coalesced pings, retry after failure."""

from __future__ import annotations

import os
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import free_port, wait_for
from feeds_fixtures import dated_story, post, unique_section

from syndicate.config import get_settings, reset_settings
from syndicate.feeds import slugify


class Hub:
    """A WebSub hub on loopback: answers 503 to the first ``fail_first`` pings, 204 after."""

    def __init__(self, fail_first: int = 1) -> None:
        self.pings: list[dict[str, list[str]]] = []
        self.failures_left = fail_first
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                hub.pings.append(form)
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

    url = f"{api_server}/feeds/sections/{slug}.atom"
    wait_for(lambda: http.get(url).status_code == 200, message="section feed served")
    response = http.get(url)
    assert response.headers["Link"] == f'<{hub.url}>; rel="hub", <{public}/feeds/sections/{slug}.atom>; rel="self"'
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
