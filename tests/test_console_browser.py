"""The operator console in a real headless Chromium at 375 px: sign in, partners, dead letters."""

from __future__ import annotations

import uuid

from browser_fixtures import browser, browser_sign_in, phone  # noqa: F401 (fixtures)
from conftest import wait_for
from newsletter_fixtures import make_list
from webhooks_fixtures import sinks  # noqa: F401 (fixture)


def test_sign_in_shows_the_dashboard_and_sign_out_ends_it(api_server, phone):
    phone.goto(f"{api_server}/console/partners")
    assert phone.url.endswith("/console/login")  # no session: the sign-in page, not the console
    phone.get_by_label("Admin token").fill("test-ingest-token")
    phone.get_by_role("button", name="Sign in").click()
    phone.get_by_role("alert").wait_for()
    assert "not the admin token" in phone.get_by_role("alert").inner_text()
    browser_sign_in(phone, api_server)
    for heading in ("Queues", "Workers seen", "Feeds", "Partners failing or disabled", "Next edition per list",
                    "Dead letters"):
        assert phone.get_by_role("heading", name=heading, exact=True).is_visible()
    # Readable on a phone: nothing wider than the screen makes the page scroll sideways.
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375
    phone.get_by_role("button", name="Sign out").click()
    phone.get_by_role("heading", name="Sign in to the syndicate console").wait_for()
    phone.goto(f"{api_server}/console")
    assert phone.url.endswith("/console/login")


def test_add_a_partner_see_its_secret_once_ping_it_and_read_the_log(api_server, phone, sinks):  # noqa: F811
    sink = sinks()
    name = f"acme-{uuid.uuid4().hex[:6]}"
    try:
        browser_sign_in(phone, api_server)
        phone.get_by_role("link", name="Partners").click()
        phone.get_by_label("Name").fill(name)
        phone.get_by_label("Webhook URL").fill("ftp://nowhere.example/")
        phone.get_by_role("button", name="Add partner").click()
        assert "$.url" in phone.get_by_role("alert").inner_text()  # each problem with its JSON path
        phone.get_by_label("Webhook URL").fill(sink.url)
        phone.get_by_role("button", name="Add partner").click()
        secret = phone.get_by_label("Signing secret").input_value()
        assert secret.startswith("whsec_")
        phone.get_by_role("link", name=f"Go to {name}").click()
        assert secret not in phone.content()  # shown once, never again
        phone.get_by_role("button", name="Ping").click()
        assert phone.locator("#ping-result").inner_text().startswith("succeeded")
        wait_for(lambda: sink.count() == 1, message="the ping at the sink")
        from webhooks_fixtures import verify

        assert verify(secret, sink.requests()[0])["type"] == "webhook.test"  # signed with the secret shown
        phone.get_by_role("button", name="Disable").click()
        assert phone.locator("#state").inner_text().startswith("disabled")
        phone.get_by_role("link", name="msg_", exact=False).first.click()
        phone.get_by_role("heading", name="Attempts of", exact=False).wait_for()
        assert "200" in phone.get_by_role("listitem").last.inner_text()
        phone.get_by_role("button", name="Enable").click()
        assert phone.locator("#state").inner_text() == "enabled"
    finally:
        # Partners are shared by the whole run: one left behind would match every later event.
        from syndicate.webhooks import registry

        if registry.find(name) is not None:
            registry.remove(name)


def test_requeue_a_dead_letter(api_server, phone, celery_worker):
    from syndicate import deadletters
    from syndicate.newsletter import editions

    config = make_list()
    article = f"t-{uuid.uuid4().hex[:12]}"
    deadletters.record("newsletter", 'ValueError: <img src=x onerror="alert(1)">', article_id=article,
                       task="syndicate.newsletter.stage_article", args=[config["id"], article])
    browser_sign_in(phone, api_server)
    phone.get_by_role("link", name="Dead letters").first.click()
    row = phone.get_by_role("row").filter(has_text=article)
    assert 'onerror="alert(1)"' in row.inner_text()  # the error is shown as text, not run as markup
    row.get_by_role("button", name="Requeue").click()
    assert "Requeued: the task is back on its queue." in phone.get_by_role("status").inner_text()
    assert phone.get_by_role("row").filter(has_text=article).count() == 0
    wait_for(lambda: article in editions.staged(config["id"]), message="the requeued task to run")
