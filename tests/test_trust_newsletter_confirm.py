"""Confirmation links: a GET (what mail scanners do) never confirms; links live 48 hours (issue 8, class 5)."""

from __future__ import annotations

import re
import time

import pytest

from conftest import wait_for
from newsletter_fixtures import addresses, make_list, smtp_sink

from syndicate.config import get_settings, reset_settings
from syndicate.newsletter import lists, service


@pytest.fixture()
def default_lifetime(monkeypatch):
    # The documented default, read from the real configuration (no override in the environment).
    monkeypatch.delenv("SYNDICATE_NEWSLETTER_CONFIRM_HOURS", raising=False)
    reset_settings()
    yield get_settings().newsletter_confirm_hours
    monkeypatch.undo()
    reset_settings()


def _pending(config: dict) -> tuple[str, str]:
    reader = addresses(1, "confirm")[0]
    record = lists.request_subscription(config["id"], reader)
    return reader, record["sid"]


def _status(config: dict, reader: str) -> str:
    return lists.get_subscriber(config["id"], reader)["status"]


def test_a_get_shows_a_button_and_only_the_post_confirms(api_server, http):
    config = make_list()
    reader, sid = _pending(config)
    path = f"/newsletters/confirm/{service.confirmation_token(config['id'], sid)}"
    for _ in range(3):  # a scanner, a preview pane, the reader: none of them confirms by looking
        page = http.get(api_server + path)
        assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
        assert f'<form method="post" action="{path}">' in page.text and "<button" in page.text
        assert _status(config, reader) == "pending"
    assert http.head(api_server + path).status_code in (200, 405) and _status(config, reader) == "pending"
    done = http.post(api_server + path)
    assert done.status_code == 200 and "Subscribed" in done.text
    assert _status(config, reader) == "confirmed"
    assert http.post(api_server + path).status_code == 200  # pressing twice is harmless


def test_the_documented_lifetime_is_48_hours_and_an_expired_link_is_gone(api_server, http, default_lifetime):
    assert default_lifetime == 48  # docs/newsletter.md: SYNDICATE_NEWSLETTER_CONFIRM_HOURS, in hours
    config = make_list()
    now = time.time()
    fresh_reader, fresh_sid = _pending(config)
    old_reader, old_sid = _pending(config)
    fresh = service.confirmation_token(config["id"], fresh_sid, issued_at=now - 47 * 3600)
    old = service.confirmation_token(config["id"], old_sid, issued_at=now - 49 * 3600)

    assert http.post(f"{api_server}/newsletters/confirm/{fresh}").status_code == 200
    assert _status(config, fresh_reader) == "confirmed"

    for method in (http.get, http.post):
        gone = method(f"{api_server}/newsletters/confirm/{old}")
        assert gone.status_code == 410
        assert "expired" in gone.text and "48 hours" in gone.text and "subscribe" in gone.text.lower()
        # It says how to subscribe again: a form that asks for a new link on the same list.
        assert f'action="/newsletters/{config["id"]}/subscribe"' in gone.text and 'name="email"' in gone.text
    assert _status(config, old_reader) == "pending"


def test_the_expired_page_form_sends_a_fresh_link_that_works(api_server, http, celery_worker):
    sink = smtp_sink()
    config = make_list()
    reader, sid = _pending(config)
    expired = service.confirmation_token(config["id"], sid, issued_at=time.time() - 49 * 3600)
    page = http.get(f"{api_server}/newsletters/confirm/{expired}")
    action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1)
    assert http.post(api_server + action, data={"email": reader}).status_code == 202
    (mail,) = wait_for(lambda: sink.received(reader), message="a fresh confirmation email")
    body = mail.get_body(("plain",)).get_content()
    assert f"within {int(get_settings().newsletter_confirm_hours)} hours" in body
    link = re.search(r"(http\S+/newsletters/confirm/\S+)", body).group(1)
    path = "/" + link.split("/", 3)[3]
    assert http.post(api_server + path).status_code == 200
    assert _status(config, reader) == "confirmed"


def test_a_forged_or_unknown_link_is_refused_without_confirming(api_server, http):
    config = make_list()
    reader, sid = _pending(config)
    token = service.confirmation_token(config["id"], sid)
    forged = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]  # always another MAC
    assert http.post(f"{api_server}/newsletters/confirm/{forged}").status_code == 400
    lists.delete_list(config["id"])
    assert http.post(f"{api_server}/newsletters/confirm/{token}").status_code == 404
