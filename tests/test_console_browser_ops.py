"""The console's articles, feeds and partner operations in a real headless Chromium at 375 px.

Stories go through the real API and the real workers; partners are real HTTP sinks on
loopback that verify signatures as a partner would (standardwebhooks). Each step saves
a screenshot in the folder printed at the start of the run.
"""

from __future__ import annotations

import uuid

import pytest
import requests
from browser_fixtures import browser, browser_sign_in, phone  # noqa: F401 (fixtures)
from conftest import unique_article, wait_for
from feeds_fixtures import post
from webhooks_fixtures import partner, sinks, verify  # noqa: F401 (fixtures)

CHANNELS = ("feeds", "webhooks", "newsletter")


def snap(page, browser, request, step: str) -> None:  # noqa: F811
    page.screenshot(path=str(browser.screenshots / f"{request.node.name}-{step}.png"), full_page=True)


def fits_a_phone(page) -> bool:
    # Readable on a phone: nothing wider than the screen makes the page scroll sideways.
    return page.evaluate("document.documentElement.scrollWidth") <= 375


def _published(api_server: str, story: dict) -> str:
    """Publish through the API; returns the event id once every channel has recorded its receipt."""
    from syndicate import events
    from syndicate.store import get_redis, key

    with requests.Session() as http:
        event_id = post(http, api_server, story)["event_id"]
    client = get_redis()
    wait_for(lambda: client.zscore(key("events:pending"), event_id) is None and
             all(client.zscore(events.owed_key(c), event_id) is None for c in CHANNELS),
             timeout=30, message="every channel's receipt")
    return event_id


def test_find_an_article_read_its_timeline_and_rebuild_the_feeds(api_server, phone, browser, request, sinks,  # noqa: F811
                                                                 partner, celery_worker):  # noqa: F811
    from syndicate.feeds import index, state
    from syndicate.store import get_redis

    story = unique_article(section=f"Console{uuid.uuid4().hex[:6]}", headline="Talks <b>resume</b> & more")
    sink = sinks()
    name, _secret = partner(sink.url, sections=[story["section"]])
    event_id = _published(api_server, story)
    wait_for(lambda: sink.count() == 1, message="the partner's delivery")

    browser_sign_in(phone, api_server)
    phone.get_by_role("link", name="Articles").click()
    phone.get_by_label("Article id").fill("no-such-story")
    phone.get_by_role("button", name="Show timeline").click()
    phone.get_by_role("heading", name="Not found").wait_for()  # a console page, not the API's JSON
    assert "no article with id 'no-such-story'" in phone.get_by_role("alert").inner_text()
    snap(phone, browser, request, "not-found")
    phone.get_by_role("link", name="Articles").click()
    phone.get_by_label("Article id").fill(story["id"])
    phone.get_by_role("button", name="Show timeline").click()
    phone.get_by_role("heading", name=f"Article {story['id']}").wait_for()
    assert phone.locator("#headline").inner_text() == "Talks <b>resume</b> & more"  # text, not markup
    phone.get_by_role("heading", name="article.published (version 1)").wait_for()
    receipts = phone.get_by_role("table", name=f"Receipts of {event_id}")
    for channel in CHANNELS:
        row = receipts.get_by_role("row").filter(has_text=channel)
        assert "received" in row.inner_text(), row.inner_text()
    feeds_in = phone.locator("#feeds-in").inner_text()
    slug = index.feed_ids(get_redis())
    assert "all" in feeds_in and any(f in feeds_in for f in slug if f.startswith("sections/console"))
    delivery = phone.get_by_role("table", name=f"Deliveries of {event_id}").get_by_role("row").filter(has_text=name)
    assert "succeeded" in delivery.inner_text()
    assert fits_a_phone(phone)
    snap(phone, browser, request, "timeline")

    renders = int(state.status(get_redis(), "all")["renders"] or 0)
    phone.get_by_role("link", name="Feeds").click()
    phone.get_by_role("heading", name="all", exact=True).wait_for()
    assert state.status(get_redis(), "all")["rss:etag"] in phone.locator("main").inner_text()
    phone.get_by_role("button", name="Rebuild every feed").click()
    assert phone.get_by_role("status").inner_text().startswith("Rebuilt ")
    assert int(state.status(get_redis(), "all")["renders"] or 0) > renders  # rendered again, now
    assert fits_a_phone(phone)
    snap(phone, browser, request, "feeds-rebuilt")


def test_add_a_partner_edit_its_filters_rotate_its_secret_ping_and_resend(api_server, phone, browser, request,  # noqa: F811
                                                                         sinks, celery_worker):  # noqa: F811
    from standardwebhooks.webhooks import WebhookVerificationError

    from syndicate.webhooks import registry

    sink = sinks()
    name = f"ops-{uuid.uuid4().hex[:6]}"
    try:
        browser_sign_in(phone, api_server)
        phone.get_by_role("link", name="Partners").click()
        phone.get_by_label("Name").fill(name)
        phone.get_by_label("Webhook URL").fill(sink.url)
        phone.get_by_role("button", name="Add partner").click()
        first = phone.get_by_label("Signing secret").input_value()
        phone.get_by_role("link", name=f"Go to {name}").click()
        snap(phone, browser, request, "added")

        phone.get_by_label("article.updated").uncheck()
        phone.get_by_label("article.retracted").uncheck()
        phone.get_by_label("Sections (comma-separated, empty for all)").fill("World, Sports")
        phone.get_by_role("button", name="Save filters").click()
        assert phone.get_by_role("status").inner_text().startswith("Filters saved")
        assert phone.locator("#event-types").inner_text() == "article.published"
        assert phone.locator("#sections-shown").inner_text() == "World, Sports"
        assert registry.get(name)["sections"] == ["World", "Sports"]
        snap(phone, browser, request, "filters")

        phone.get_by_label("Hours the old secret keeps signing", exact=False).fill("0")
        phone.get_by_role("button", name="Rotate secret").click()
        second = phone.get_by_label("Signing secret").input_value()
        assert second.startswith("whsec_") and second != first
        snap(phone, browser, request, "rotated")
        phone.get_by_role("link", name=f"Go to {name}").click()
        assert second not in phone.content() and first not in phone.content()  # shown once, never again

        phone.get_by_role("button", name="Ping").click()
        assert phone.locator("#ping-result").inner_text().startswith("succeeded")
        wait_for(lambda: sink.count() == 1, message="the ping at the sink")
        assert verify(second, sink.requests()[0])["type"] == "webhook.test"  # the new secret signs
        with pytest.raises(WebhookVerificationError):
            verify(first, sink.requests()[0])  # no grace asked: the old one no longer does
        snap(phone, browser, request, "pinged")

        phone.get_by_role("link", name="msg_", exact=False).first.click()
        phone.get_by_role("heading", name="Attempts of", exact=False).wait_for()
        phone.get_by_role("button", name="Resend this delivery").click()
        assert phone.get_by_role("status").inner_text().startswith("Resent")
        wait_for(lambda: sink.count() == 2, message="the resent delivery at the sink")
        again, once = sink.requests()[1], sink.requests()[0]
        assert again.headers["webhook-id"] == once.headers["webhook-id"] and again.body == once.body
        assert verify(second, again)["type"] == "webhook.test"
        delivery = once.headers["webhook-id"]
        from syndicate.webhooks import service

        wait_for(lambda: service.show(delivery)["attempts"] == 2, message="the second attempt recorded")
        phone.reload()
        attempts = phone.get_by_role("list", name="Every attempt").get_by_role("listitem")
        assert attempts.count() == 2 and "HTTP 200" in attempts.last.inner_text()
        assert fits_a_phone(phone)
        snap(phone, browser, request, "resent")
    finally:
        # Partners are shared by the whole run: one left behind would match every later event.
        if registry.find(name) is not None:
            registry.remove(name)


def test_recover_what_a_disabled_partner_missed(api_server, phone, browser, request, sinks, partner,  # noqa: F811
                                               celery_worker):
    from syndicate.webhooks import registry, service

    story = unique_article(section=f"Console{uuid.uuid4().hex[:6]}")
    sink = sinks()
    name, secret = partner(sink.url, sections=[story["section"]])
    registry.set_enabled(name, False, "maintenance")
    _published(api_server, story)
    wait_for(lambda: [d["id"] for d in service.listing(name, "skipped")], message="the skipped delivery")
    (skipped,) = [d["id"] for d in service.listing(name, "skipped")]

    browser_sign_in(phone, api_server)
    phone.goto(f"{api_server}/console/partners/{name}")
    phone.get_by_role("button", name="Enable").click()
    phone.get_by_label("Re-send failed and skipped deliveries since", exact=False).fill("1h")
    phone.get_by_role("button", name="Recover").click()
    phone.get_by_role("heading", name="Recovered since", exact=False).wait_for()
    assert phone.locator("#resent").inner_text() == skipped
    wait_for(lambda: sink.count() == 1, message="the recovered delivery at the sink")
    received = sink.requests()[0]
    assert received.headers["webhook-id"] == skipped
    assert verify(secret, received)["data"]["id"] == story["id"]
    assert fits_a_phone(phone)
    snap(phone, browser, request, "recovered")
