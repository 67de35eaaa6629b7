"""The console refuses everyone without a session, every POST without its CSRF token, and the ingest token."""

from __future__ import annotations

import re

import pytest
import requests
from browser_fixtures import csrf_of, sign_in
from fastapi.routing import APIRoute

# The only console addresses open without a session: the sign-in form itself and its stylesheet.
PUBLIC = {("GET", "/console/login"), ("POST", "/console/login"), ("GET", "/console/static/console.css")}


def _walk(routes):
    # FastAPI wraps each included router (no prefix is used here); descend into the router it holds.
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _walk(inner.routes)
        else:
            yield route


def console_routes():
    from syndicate.api import create_app

    for route in _walk(create_app().routes):
        if isinstance(route, APIRoute) and route.path.startswith("/console"):
            for method in sorted(route.methods - {"HEAD"}):
                if (method, route.path) not in PUBLIC:
                    yield method, re.sub(r"\{[^}]+\}", "acme", route.path)


def test_the_walk_finds_the_console():
    found = set(console_routes())
    assert ("GET", "/console") in found and ("POST", "/console/dead-letters/requeue") in found


@pytest.mark.parametrize("method,path", sorted(set(console_routes())))
def test_every_console_route_refuses_a_request_without_a_session(api_server, method, path):
    for cookies in ({}, {"syndicate_console": "forged.9999999999.00"}):
        answer = requests.request(method, api_server + path, cookies=cookies, allow_redirects=False,
                                  data={"csrf": "x"}, timeout=10)
        if method == "GET":
            assert (answer.status_code, answer.headers.get("location")) == (303, "/console/login"), answer.text
        else:
            assert answer.status_code == 403, answer.text


def test_the_ingest_token_cannot_sign_in(api_server, http):
    answer = sign_in(http, api_server, token="test-ingest-token")
    assert answer.status_code == 401
    assert "syndicate_console" not in http.cookies
    assert http.get(f"{api_server}/console", allow_redirects=False).status_code == 303


def test_sign_in_without_the_form_token_is_refused(api_server, http):
    answer = http.post(f"{api_server}/console/login", data={"token": "test-admin-token"}, allow_redirects=False)
    assert answer.status_code == 403 and "syndicate_console" not in http.cookies


def test_admin_session_cookie_headers_and_sign_out(api_server, http):
    answer = sign_in(http, api_server)
    assert answer.status_code == 303
    cookie = next(v for k, v in answer.raw.headers.items() if k.lower() == "set-cookie" and
                  v.startswith("syndicate_console="))
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower() and "Path=/console" in cookie
    assert "secure" not in cookie.lower().replace("samesite", "")  # the test public URL is plain http

    dashboard = http.get(f"{api_server}/console")
    assert dashboard.status_code == 200 and "<h1>Dashboard</h1>" in dashboard.text
    csp = dashboard.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert dashboard.headers["x-frame-options"] == "DENY" and dashboard.headers["referrer-policy"]
    assert '<html lang="en">' in dashboard.text and "<script" not in dashboard.text

    stolen = http.cookies["syndicate_console"]
    out = http.post(f"{api_server}/console/logout", data={"csrf": csrf_of(dashboard.text)}, allow_redirects=False)
    assert out.status_code == 303
    # Signed out on the server: the old cookie, replayed, no longer opens anything.
    replay = requests.get(f"{api_server}/console", cookies={"syndicate_console": stolen}, allow_redirects=False)
    assert replay.status_code == 303


def test_a_post_without_the_csrf_token_is_refused(api_server, http, redis_client):
    import json

    from syndicate.store import key

    assert sign_in(http, api_server).status_code == 303
    marker = {"channel": "feeds", "task": "syndicate.feeds.rebuild_feed", "args": ["csrf-test"], "kwargs": {}}
    redis_client.lpush(key("dead-letters"), json.dumps(marker))
    raw = json.dumps(marker, sort_keys=True)
    for fields in ({"record": raw}, {"record": raw, "csrf": "wrong"}):
        answer = http.post(f"{api_server}/console/dead-letters/requeue", data=fields, allow_redirects=False)
        assert answer.status_code == 403
    assert json.dumps(marker) in redis_client.lrange(key("dead-letters"), 0, -1)  # nothing was requeued
    redis_client.lrem(key("dead-letters"), 0, json.dumps(marker))


def test_a_tampered_session_cookie_is_refused(api_server, http):
    assert sign_in(http, api_server).status_code == 303
    sid, expires, mac = http.cookies["syndicate_console"].split(".")
    for forged in (f"{sid}.{int(expires) + 3600}.{mac}", f"{sid}x.{expires}.{mac}"):
        answer = requests.get(f"{api_server}/console", cookies={"syndicate_console": forged}, allow_redirects=False)
        assert answer.status_code == 303


def test_the_cookie_is_secure_when_the_public_url_is_https(api_server, monkeypatch):
    from syndicate.config import reset_settings

    monkeypatch.setenv("SYNDICATE_PUBLIC_URL", "https://news.example")
    reset_settings()
    try:
        form = requests.get(f"{api_server}/console/login")
        assert "; secure" in form.headers["set-cookie"].lower()
        # A client keeps Secure cookies for https only: this one, talking plain http on loopback, is
        # handed the sign-in pair explicitly, as the browser behind the https proxy would send it.
        pair = csrf_of(form.text)
        answer = requests.post(f"{api_server}/console/login", data={"csrf": pair, "token": "test-admin-token"},
                               cookies={"syndicate_console_login": pair}, allow_redirects=False)
    finally:
        monkeypatch.undo()
        reset_settings()
    assert answer.status_code == 303
    cookie = next(v for k, v in answer.raw.headers.items() if k.lower() == "set-cookie" and
                  v.startswith("syndicate_console="))
    assert "; secure" in cookie.lower()
