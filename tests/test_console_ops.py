"""Console articles, feeds and partners over HTTP: refusals, error pages, the sign-in limit, the store down."""

from __future__ import annotations

import re
import uuid

import pytest
import requests
from browser_fixtures import ADMIN_TOKEN, csrf_of, sign_in
from conftest import _TMP, ROOT, Deployment, ServerThread, free_port, unique_article, wait_for
from feeds_fixtures import post
from webhooks_fixtures import partner, sinks  # noqa: F401 (fixtures)

# Every form this part of the console posts, with the fields a valid submission would carry.
POSTS = {
    "/console/feeds/rebuild": {"feed": "all"},
    "/console/partners/{p}/filters": {"type:article.published": "on", "sections": ""},
    "/console/partners/{p}/rotate": {"grace_hours": "0"},
    "/console/partners/{p}/recover": {"since": "1h"},
    "/console/partners/{p}/deliveries/{d}/resend": {},
}


def _is_page(answer: requests.Response, status: int, *texts: str) -> str:
    """The answer is a console HTML page (not JSON) with ``status`` saying each of ``texts``."""
    assert answer.status_code == status, answer.text[:500]
    assert answer.headers["content-type"].startswith("text/html"), answer.headers["content-type"]
    assert "<script" not in answer.text and "default-src 'self'" in answer.headers["content-security-policy"]
    assert '<link rel="stylesheet" href="/console/static/console.css">' in answer.text  # the console's look
    for text in texts:
        assert text in answer.text, answer.text[:2000]
    return answer.text


@pytest.fixture()
def signed_in(api_server, http):
    assert sign_in(http, api_server).status_code == 303
    return http


@pytest.fixture()
def pinged(partner, sinks):  # noqa: F811
    """A partner on a local sink with one delivery (its ping): (name, secret, delivery id)."""
    from syndicate.webhooks import service

    name, secret = partner(sinks().url)
    return name, secret, service.ping(name, service.context())["id"]


def test_every_form_refuses_a_post_without_its_csrf_token(api_server, signed_in, pinged):
    from syndicate.webhooks import registry, service

    name, _secret, delivery = pinged
    before = registry.get(name)
    attempts = service.show(delivery)["attempts"]
    for template, fields in POSTS.items():
        path = template.format(p=name, d=delivery)
        for csrf in ({}, {"csrf": "wrong"}):
            answer = signed_in.post(api_server + path, data={**fields, **csrf}, allow_redirects=False)
            _is_page(answer, 403, "CSRF token")
    # Nothing happened: no new secret, no filter change, no new round of attempts.
    assert registry.get(name) == before
    assert service.show(delivery)["attempts"] == attempts


def test_unknown_article_partner_delivery_and_feed_are_404_pages(api_server, signed_in, pinged):
    name, _secret, _delivery = pinged
    _is_page(signed_in.get(f"{api_server}/console/articles/no-such-story-{uuid.uuid4().hex[:6]}"), 404,
             "<h1>Not found</h1>", "no article with id")
    _is_page(signed_in.get(f"{api_server}/console/partners/nobody-{uuid.uuid4().hex[:6]}"), 404, "no partner")
    _is_page(signed_in.get(f"{api_server}/console/partners/{name}?delivery=msg_unknown"), 404, "no delivery")
    csrf = csrf_of(signed_in.get(f"{api_server}/console/feeds").text)
    answer = signed_in.post(f"{api_server}/console/feeds/rebuild", data={"csrf": csrf, "feed": "sections/<nope>"})
    _is_page(answer, 404, "no feed &#39;sections/&lt;nope&gt;&#39;")  # the name is escaped text
    answer = signed_in.post(f"{api_server}/console/partners/{name}/deliveries/msg_unknown/resend",
                            data={"csrf": csrf})
    _is_page(answer, 404, "no delivery")
    # A console address that does not exist is a console page too, not the API's JSON.
    _is_page(signed_in.get(f"{api_server}/console/no-such-page"), 404, "Not found")


def test_bad_form_input_is_400_naming_the_field(api_server, signed_in, pinged):
    from syndicate.webhooks import registry

    name, _secret, _delivery = pinged
    _is_page(signed_in.get(f"{api_server}/console/articles", params={"id": "no spaces <b>"}), 400,
             "<code>id</code>")
    page = signed_in.get(f"{api_server}/console/partners/{name}")
    csrf = csrf_of(page.text)
    base = f"{api_server}/console/partners/{name}"
    _is_page(signed_in.post(f"{base}/recover", data={"csrf": csrf, "since": "last tuesday"}), 400,
             "<code>since</code>", "neither an RFC 3339 time")
    _is_page(signed_in.post(f"{base}/rotate", data={"csrf": csrf, "grace_hours": "soon"}), 400,
             "<code>grace_hours</code>")
    # No event type ticked: the schema's own path names the field; the form keeps what was typed.
    text = _is_page(signed_in.post(f"{base}/filters", data={"csrf": csrf, "sections": "World, <US>"}), 400,
                    "<code>$.eventTypes</code>", 'value="World, &lt;US&gt;"')
    assert 'role="alert"' in text
    _is_page(signed_in.post(f"{api_server}/console/partners", data={"csrf": csrf, "name": "Bad Name", "url": "x"}),
             400, "<code>$.name</code>", "<code>$.url</code>")
    assert registry.get(name)["eventTypes"] == ["article.published", "article.updated", "article.retracted"]


def test_recovering_a_disabled_partner_is_a_409_page(api_server, signed_in, pinged):
    from syndicate.webhooks import registry

    name, _secret, _delivery = pinged
    registry.set_enabled(name, False, "paused")
    csrf = csrf_of(signed_in.get(f"{api_server}/console/partners/{name}").text)
    _is_page(signed_in.post(f"{api_server}/console/partners/{name}/recover", data={"csrf": csrf, "since": "1h"}),
             409, "is disabled", "enable")


def test_article_timeline_over_http(api_server, signed_in, celery_worker):
    from syndicate.feeds import index
    from syndicate.store import get_redis

    story = unique_article(headline="Talks <resume> & more")
    event_id = post(signed_in, api_server, story)["event_id"]
    wait_for(lambda: get_redis().zscore(index.index_key("all"), story["id"]) is not None, message="the story in all")
    found = signed_in.get(f"{api_server}/console/articles", params={"id": story["id"]}, allow_redirects=False)
    assert found.status_code == 303 and found.headers["location"] == f"/console/articles/{story['id']}"
    text = _is_page(signed_in.get(api_server + found.headers["location"]), 200,
                    "Talks &lt;resume&gt; &amp; more", event_id, "article.published")
    assert re.search(r'<ul id="feeds-in"><li><a href="/console/feeds">all</a>', text)


def test_sign_in_is_limited_per_address_across_api_servers(api_server):
    address = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    # uvicorn trusts X-Forwarded-For from loopback (a proxy on the same host): each test run's
    # address is its own, so the limit reached here locks out nobody else.
    def attempt(base: str, token: str, ip: str = address) -> requests.Response:
        with requests.Session() as http:
            http.headers["X-Forwarded-For"] = ip
            return sign_in(http, base, token=token)

    for _ in range(10):
        assert attempt(api_server, "wrong-token").status_code == 401
    refused = attempt(api_server, ADMIN_TOKEN)  # the right token too: the address waits
    _is_page(refused, 429, "Too many sign-in attempts")
    assert 1 <= int(refused.headers["retry-after"]) <= 300
    assert "syndicate_console" not in refused.cookies
    # Another API server (an app of its own, same store) refuses the address too; other addresses sign in.
    from syndicate.api import create_app

    with ServerThread(create_app()) as other:
        assert attempt(other.url, ADMIN_TOKEN).status_code == 429
        assert attempt(other.url, ADMIN_TOKEN, ip="198.51.100.251").status_code == 303


@pytest.fixture()
def api_on_own_redis(tmp_path):
    """A real ``syndicate api`` process on a Redis server of this test's own: (API URL, that server)."""
    import subprocess
    import sys

    from syndicate.embedded import EmbeddedRedis

    server = EmbeddedRedis(_TMP / f"console-down-{free_port()}").start()
    env = Deployment(tmp_path, redis_url=server.url).env
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "syndicate.cli.main", "api", "--port", str(port)], cwd=ROOT,
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, "the API process exited"
        try:
            return requests.get(f"{url}/healthz", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_for(up, timeout=30, interval=0.1, message="the API process to serve")
        yield url, server
    finally:
        proc.terminate()
        proc.wait(10)
        server.stop()


def test_the_store_down_is_a_503_page_with_retry_after(api_on_own_redis):
    api, server = api_on_own_redis
    with requests.Session() as http:
        assert sign_in(http, api).status_code == 303
        server.process.kill()  # SIGKILL: no goodbye to the clients
        server.process.wait()
        for path in ("/console/articles/some-story", "/console/feeds", "/console/partners/acme", "/console"):
            answer = http.get(api + path, allow_redirects=False)
            _is_page(answer, 503, "Store unavailable", "retry in")
            assert answer.headers["retry-after"].isdigit()
        csrf = csrf_of(http.get(f"{api}/console/login").text)
        answer = http.post(f"{api}/console/login", data={"csrf": csrf, "token": ADMIN_TOKEN})
        _is_page(answer, 503, "Store unavailable")
