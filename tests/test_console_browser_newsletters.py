"""Newsletters in a real headless Chromium at 375 px: the operator's console pages and the reader's round trip.

Each step saves a screenshot (``{test}-{step}.png``) in the run's screenshot folder.
"""

from __future__ import annotations

import re
import time

import pytest
from browser_fixtures import browser, browser_sign_in, phone  # noqa: F401 (fixtures)
from conftest import unique_article, wait_for
from newsletter_fixtures import addresses, make_list, publish, smtp_sink, subscribe_all

from syndicate.newsletter import lists, service


@pytest.fixture()
def sink(redis_client):
    return smtp_sink()


@pytest.fixture()
def shot(browser, phone, request):  # noqa: F811
    def save(step: str) -> None:
        phone.screenshot(path=str(browser.screenshots / f"{request.node.name}-{step}.png"), full_page=True)
        # Readable on a phone: nothing wider than the screen makes the page scroll sideways.
        assert phone.evaluate("document.documentElement.scrollWidth") <= 375, step
        if request.node.name.startswith("test_a_reader"):  # every reader page wears the readers' stylesheet
            assert phone.evaluate("getComputedStyle(document.body).maxWidth") == "600px", step
    return save


@pytest.fixture()
def newsletter():
    config = make_list(name="Morning <Edition>", description="The news before breakfast.")
    yield config
    lists.delete_list(config["id"])


def test_run_a_list_from_the_console(api_server, phone, shot, sink, newsletter, celery_worker):
    lid = newsletter["id"]
    kept, added = addresses(2, "console")
    subscribe_all(lid, [kept])
    publish(unique_article(section=newsletter["sections"][0], headline="Talks resume in Geneva"))

    browser_sign_in(phone, api_server)
    phone.get_by_role("link", name="Newsletters").click()
    phone.get_by_role("heading", name="Newsletters").wait_for()
    shot("lists")
    phone.get_by_role("link", name="Morning <Edition>").click()  # a list's name is text, not markup
    phone.get_by_role("heading", name="Morning <Edition>").wait_for()
    assert "0 7 * * *" in phone.locator("main").inner_text()
    assert "America/New_York" in phone.locator("#next-run").inner_text()

    phone.get_by_label("Email address").fill(added)
    phone.get_by_role("button", name="Add subscriber").click()
    assert phone.get_by_role("status").first.inner_text().startswith("Added")
    phone.get_by_label("Search addresses").fill(added.split("@")[0])
    phone.get_by_role("button", name="Search").click()
    assert phone.locator("#matching").inner_text().startswith("1 subscriber(s) match")
    listed = phone.locator("#subscribers").inner_text()
    assert added in listed and kept not in listed
    shot("search")
    phone.get_by_role("button", name=f"Remove {added}").click()
    assert phone.get_by_role("status").first.inner_text().startswith("Removed")
    assert lists.get_subscriber(lid, added)["status"] == "unsubscribed"

    (imported,) = addresses(1, "imported")
    phone.get_by_label("CSV file", exact=False).set_input_files(files=[{
        "name": "readers.csv", "mimeType": "text/csv",
        "buffer": f"email,name\n{imported},Ada\nnot-an-address,Bob\n,Cy\n".encode()}])
    phone.get_by_role("button", name="Import").click()
    assert phone.locator("#import-counts").inner_text().startswith("1 added")
    problems = phone.locator("#import-problems tbody tr").all_inner_texts()
    assert [p.split("\t")[0] for p in problems] == ["3", "4"]
    assert "'not-an-address' is not an email address" in problems[0]
    shot("import")

    phone.get_by_role("link", name="Preview the next edition").click()
    assert phone.locator("#story-count").inner_text().startswith("1 story")
    frame = phone.frame_locator("iframe.preview")
    frame.get_by_text("Talks resume in Geneva").first.wait_for()
    assert phone.locator("iframe.preview").get_attribute("sandbox") == ""
    shot("preview")

    phone.get_by_role("button", name="Send now").click()
    phone.wait_for_url(re.compile(r".*/editions/.+"))
    wait_for(lambda: sink.received(kept) and sink.received(imported), message="the edition at the sink")
    assert sink.received(kept)[0]["Subject"] and not sink.received(added)  # the removed reader got nothing
    wait_for(lambda: (phone.reload(), phone.locator("#edition-state").inner_text())[1] == "sent", interval=0.5,
             message="the edition page to say sent")
    outcomes = dict(r.split("\t")[:2] for r in phone.locator("#outcomes tbody tr").all_inner_texts())
    assert outcomes == {kept: "sent", imported: "sent"}
    shot("edition")
    phone.get_by_role("link", name="Back to", exact=False).click()
    assert phone.locator("#editions").get_by_role("link").count() == 1


def test_a_reader_subscribes_confirms_and_unsubscribes(api_server, phone, shot, sink, newsletter, celery_worker):
    lid = newsletter["id"]
    (reader,) = addresses(1, "reader")
    phone.goto(f"{api_server}/newsletters/{lid}")
    assert phone.get_by_role("heading", level=1).inner_text() == "Morning <Edition>"
    shot("list")
    phone.get_by_label("Email address").fill(reader)
    phone.get_by_role("button", name="Subscribe").click()
    assert "Check your inbox" in phone.get_by_role("status").inner_text()
    shot("check-inbox")
    (mail,) = wait_for(lambda: sink.received(reader), message="the confirmation email")
    link = re.search(r"http\S+(/newsletters/confirm/\S+)", mail.get_body(("plain",)).get_content()).group(1)
    phone.goto(api_server + link)
    shot("confirm")
    phone.get_by_role("button", name="Confirm my subscription").click()
    phone.get_by_role("heading", name="Subscribed").wait_for()
    assert lists.get_subscriber(lid, reader)["status"] == "confirmed"
    shot("subscribed")

    publish(unique_article(section=newsletter["sections"][0]))
    service.run_edition(service.open_manual(lid))
    edition = wait_for(lambda: sink.received(reader)[1:], message="the edition")[0]
    unsubscribe = re.search(r"http\S+(/unsubscribe/[^\s>]+)", edition["List-Unsubscribe"]).group(1)
    phone.goto(api_server + unsubscribe)
    shot("unsubscribe")
    phone.get_by_role("button", name="Unsubscribe").click()
    phone.get_by_role("heading", name="Unsubscribed").wait_for()
    assert lists.get_subscriber(lid, reader)["status"] == "unsubscribed"
    shot("unsubscribed")

    sid = lists.get_subscriber(lid, reader)["sid"]
    phone.goto(f"{api_server}/newsletters/confirm/{service.confirmation_token(lid, sid, time.time() - 49 * 3600)}")
    phone.get_by_role("heading", name="Link expired").wait_for()
    assert phone.get_by_role("button", name="Send me a new link").is_visible()
    shot("expired")
    phone.get_by_label("Email address").fill(reader)
    phone.get_by_role("button", name="Send me a new link").click()
    phone.get_by_role("heading", name="Check your inbox").wait_for()  # a page, not the API's JSON
    shot("fresh-link")
    phone.goto(f"{api_server}/newsletters/no-such-list-{lid}")
    phone.get_by_role("heading", name="Page not found").wait_for()
    shot("not-found")
    assert reader not in phone.content()
