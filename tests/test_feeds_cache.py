"""The API's in-process feed cache: polls answered from memory, never a stale document.

Real uvicorn, real Redis, real workers. A document served once is answered from the
process's cache (no Redis round trip) with the same bytes and headers as the full
path, and each render drops it: a reader polling through a burst of updates sees the
stored document once the burst is rendered.
"""

from __future__ import annotations

import threading
import time

import pytest
import requests

from conftest import ROOT, Deployment, ServerThread, free_port, wait_for
from feeds_fixtures import dated_story, post, unique_section


def _get(url: str, timeout: float = 5):
    try:
        return requests.get(url, timeout=timeout)
    except requests.RequestException:
        return None


def _prefix() -> str:
    from syndicate.config import get_settings

    return get_settings().redis_prefix


@pytest.fixture()
def cached_api(redis_client):
    """An API server of its own, so the test can see its application's feed cache."""
    from syndicate.api import create_app

    app = create_app()
    with ServerThread(app) as server:
        yield server.url, app.state.feed_cache


def test_a_served_document_is_answered_from_memory_with_the_same_bytes_and_headers(
        celery_worker, cached_api, http, redis_client):
    api_server, cache = cached_api
    section = unique_section("Cache")
    post(http, api_server, dated_story(section))
    slug_feeds = wait_for(lambda: [f for f in http.get(f"{api_server}/feeds").json()["feeds"]
                                   if f["section"] == section], timeout=30, message="the section feed")
    url = slug_feeds[0]["urls"]["atom"]
    path = url.split("//", 1)[1].split("/", 1)[1]
    path = "/" + path
    first = wait_for(lambda: (r := http.get(f"{api_server}{path}")).status_code == 200 and r, timeout=30,
                     message="the feed served")
    wait_for(lambda: (cache.live and path in cache.entries) or (http.get(f"{api_server}{path}") and False),
             timeout=15, message="the document cached")
    again = http.get(f"{api_server}{path}")
    assert again.content == first.content
    same = {"etag", "last-modified", "cache-control", "content-type", "content-length", "x-content-type-options"}
    assert {k: again.headers.get(k) for k in same} == {k: first.headers.get(k) for k in same}
    conditional = http.get(f"{api_server}{path}", headers={"If-None-Match": first.headers["ETag"]})
    assert conditional.status_code == 304 and conditional.content == b""
    assert conditional.headers["ETag"] == first.headers["ETag"]
    assert "content-type" not in conditional.headers
    head = http.head(f"{api_server}{path}")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(first.content))

    # Answered from memory: a write to the stored document that bypasses the change stream (no render
    # does that) is not seen by polls, which therefore do not read the store.
    feed_id = path[len("/feeds/"):].rsplit(".", 1)[0]
    doc = f"{_prefix()}feeds:doc:{feed_id}"
    redis_client.hset(doc, "atom:etag", '"bypassed"')
    for _ in range(5):
        assert http.get(f"{api_server}{path}").headers["ETag"] == first.headers["ETag"]
    redis_client.hset(doc, "atom:etag", first.headers["ETag"])

    # A new story in that section: the render drops the cached copy and the next poll shows it.
    newer = dated_story(section)
    post(http, api_server, newer)
    rendered = wait_for(lambda: (e := redis_client.hget(doc, "atom:etag")) != first.headers["ETag"] and e,
                        timeout=30, message="the new story rendered")
    wait_for(lambda: http.get(f"{api_server}{path}").headers["ETag"] == rendered, timeout=5,
             message="the new document served")
    from syndicate.feeds.model import stable_id

    assert stable_id(newer["id"]) in http.get(f"{api_server}{path}").text
    assert http.get(f"{api_server}{path}", headers={"If-None-Match": first.headers["ETag"]}).status_code == 200


def test_polling_through_a_burst_of_updates_ends_on_the_stored_document(celery_worker, api_server, redis_client):
    section = unique_section("Burst")
    with requests.Session() as http:
        post(http, api_server, dated_story(section))
        feed = wait_for(lambda: [f for f in http.get(f"{api_server}/feeds").json()["feeds"] if f["section"] == section],
                        timeout=30, message="the section feed")[0]
    path = "/" + feed["urls"]["json"].split("//", 1)[1].split("/", 1)[1]
    feed_id = feed["id"]
    stop = threading.Event()
    seen_etags: list[str] = []

    def poll() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                r = session.get(f"{api_server}{path}")
                if r.status_code == 200:
                    seen_etags.append(r.headers["ETag"])

    pollers = [threading.Thread(target=poll, daemon=True) for _ in range(3)]
    for t in pollers:
        t.start()
    try:
        with requests.Session() as http:
            for _ in range(15):
                post(http, api_server, dated_story(section))
        doc = f"{_prefix()}feeds:doc:{feed_id}"
        wait_for(lambda: redis_client.hget(doc, "items") == "16", timeout=60, message="every story rendered")
        time.sleep(0.5)  # quiet: no render is in flight any more
        stored = redis_client.hget(doc, "json:etag")
        with requests.Session() as http:
            wait_for(lambda: http.get(f"{api_server}{path}").headers["ETag"] == stored, timeout=5,
                     message="the stored document served")
            for _ in range(10):  # and it stays so: no older copy resurfaces
                response = http.get(f"{api_server}{path}")
                assert response.headers["ETag"] == stored
                assert len(response.json()["items"]) == 16
    finally:
        stop.set()
        for t in pollers:
            t.join(10)
    assert len(set(seen_etags)) > 1  # the pollers really read through the changes


def test_with_the_store_gone_feeds_answer_503_not_a_cached_copy(tmp_path):
    """The cache serves only while it follows the store: a stopped store gets 503, as every route does."""
    import subprocess
    import sys

    from faults_harness import RedisServer

    server = RedisServer(tmp_path / "redis")
    server.start()
    dep = Deployment(tmp_path, redis_url=server.url)
    port = free_port()
    api = subprocess.Popen([sys.executable, "-m", "syndicate.cli.main", "api", "--port", str(port)], env=dep.env,
                           cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: (r := _get(f"{base}/healthz")) is not None and r.status_code == 200, timeout=30,
                 message="the API up")
        dep.cli("feeds", "rebuild")
        ok = wait_for(lambda: (r := _get(f"{base}/feeds/all.rss")) is not None and r.status_code == 200 and r,
                      timeout=15, message="the main feed")
        for _ in range(3):
            assert requests.get(f"{base}/feeds/all.rss", timeout=5).content == ok.content
        server.kill()
        gone = wait_for(lambda: (r := _get(f"{base}/feeds/all.rss", 15)) is not None and r.status_code == 503 and [r],
                        timeout=30, message="503 once the store is gone")[0]
        assert gone.headers["Retry-After"]
        server.start()
        back = wait_for(lambda: (r := _get(f"{base}/feeds/all.rss")) is not None and r.status_code == 200 and r,
                        timeout=30, message="served again")
        assert back.content == ok.content
    finally:
        api.terminate()
        api.wait(20)
        dep.close()
        server.kill()
