"""Readers' newsletter pages in a real headless Chromium: subscribe, confirm from the email, read the archive."""

from __future__ import annotations

import re

import feedparser
import pytest
from browser_fixtures import browser, phone  # noqa: F401 (fixtures)
from conftest import unique_article, wait_for
from newsletter_fixtures import addresses, make_list, publish, smtp_sink, subscribe_all


@pytest.fixture()
def sink(redis_client):
    return smtp_sink()


def _sent_edition(config: dict, readers: list[str], **story) -> str:
    from syndicate.newsletter import service

    publish(unique_article(section=config["sections"][0], **story))
    subscribe_all(config["id"], readers)
    eid = service.open_manual(config["id"])
    service.run_edition(eid)
    return eid


def test_subscribe_and_confirm_from_the_emailed_link(api_server, phone, sink, celery_worker):
    from syndicate.newsletter import lists

    config = make_list(description="The news before breakfast.")
    (reader,) = addresses(1, "browser")
    phone.goto(f"{api_server}/newsletters/{config['id']}")
    assert phone.get_by_role("heading", level=1).inner_text() == "Morning Edition"
    assert "The news before breakfast." in phone.content()
    phone.get_by_label("Email address").fill(reader)
    phone.get_by_role("button", name="Subscribe").click()
    assert "Check your inbox" in phone.get_by_role("status").inner_text()
    assert reader not in phone.content()
    (mail,) = wait_for(lambda: sink.received(reader), message="the confirmation email")
    link = re.search(r"(http\S+/newsletters/confirm/\S+)", mail.get_body(("plain",)).get_content()).group(1)
    phone.goto(api_server + "/" + link.split("/", 3)[3])
    assert lists.get_subscriber(config["id"], reader)["status"] == "pending"  # opening the link is not enough
    phone.get_by_role("button", name="Confirm my subscription").click()
    phone.get_by_role("heading", name="Subscribed").wait_for()
    assert lists.get_subscriber(config["id"], reader)["status"] == "confirmed"


def test_read_the_archive_and_its_feed_without_any_address_or_token(api_server, phone, sink, http):
    config = make_list()
    readers = addresses(2, "archive")
    eid = _sent_edition(config, readers, headline='Talks resume <script>alert("x")</script>')
    phone.goto(f"{api_server}/newsletters/{config['id']}")
    phone.get_by_role("link", name="All editions").click()
    phone.get_by_role("heading", name="Morning Edition: past editions").wait_for()
    phone.locator(f'a[href$="/editions/{eid}"]').click()
    assert 'Talks resume <script>alert("x")</script>' in phone.locator("body").inner_text()  # text, not markup
    assert phone.evaluate("document.scripts.length") == 0
    for path in (f"/newsletters/{config['id']}", f"/newsletters/{config['id']}/editions",
                 f"/newsletters/{config['id']}/editions/{eid}", f"/newsletters/{config['id']}/editions.atom"):
        body = http.get(api_server + path).text
        assert not any(reader in body for reader in readers), path
        assert "/unsubscribe/" not in body and "/newsletters/confirm/" not in body, path
    feed = feedparser.parse(http.get(f"{api_server}/newsletters/{config['id']}/editions.atom").content)
    assert not feed.bozo and [e.link for e in feed.entries] == [f"http://127.0.0.1:8000/newsletters/"
                                                              f"{config['id']}/editions/{eid}"]


def test_unknown_lists_and_unsent_editions_are_404(api_server, http, sink):
    config = make_list()
    assert http.get(f"{api_server}/newsletters/no-such-list").status_code == 404
    from syndicate.newsletter import service

    publish(unique_article(section=config["sections"][0]))
    unsent = service.open_manual(config["id"])  # opened, never sent: not published
    assert http.get(f"{api_server}/newsletters/{config['id']}/editions/{unsent}").status_code == 404
    assert http.get(f"{api_server}/newsletters/{config['id']}/editions/..%2f..").status_code in (404, 422)


def test_a_scheduled_edition_id_is_a_valid_address(api_server, http, sink):
    config = make_list()
    # Scheduled editions are named "{list}.{YYYYMMDDTHHMMZ}": such an id is looked up, not refused as malformed.
    answer = http.get(f"{api_server}/newsletters/{config['id']}/editions/{config['id']}.20260101T0700Z")
    assert answer.status_code == 404 and answer.json()["error"] == "not_found"


def test_a_bad_address_on_the_subscribe_form_is_named_not_a_server_error(api_server, http, sink):
    config = make_list()
    answer = http.post(f"{api_server}/newsletters/{config['id']}", data={"email": "not an address"})
    assert answer.status_code == 422 and 'role="alert"' in answer.text
    assert "is not an email address" in answer.text
