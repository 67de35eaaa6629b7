"""What the console's dashboard shows an operator, read over HTTP from the real server."""

from __future__ import annotations

import datetime as dt
import html
import uuid
from zoneinfo import ZoneInfo

from browser_fixtures import sign_in
from newsletter_fixtures import make_list


def test_dashboard_shows_workers_partners_lists_and_dead_letters(api_server, http, redis_client):
    from syndicate import deadletters, instance
    from syndicate.config import get_settings
    from syndicate.newsletter import cron
    from syndicate.store import key
    from syndicate.webhooks import registry
    from syndicate.webhooks.guard import Guard

    worker = f"console-{uuid.uuid4().hex[:6]}@test"
    instance.beat(worker, ["feeds"])
    config = make_list(name="Tokyo <Morning>", schedule="30 6 * * *", timezone="Asia/Tokyo")
    partner = f"off-{uuid.uuid4().hex[:6]}"
    registry.add({"name": partner, "url": "http://127.0.0.1:9/hook"}, Guard.from_settings(get_settings()))
    registry.set_enabled(partner, False, "paused by <ops>")
    deadletters.record("feeds", "boom", article_id="t-dashboard")

    assert sign_in(http, api_server).status_code == 303
    page = http.get(f"{api_server}/console").text
    assert f"{worker}: feeds" in page
    assert f"{html.escape(partner)}</a>:\ndisabled (paused by &lt;ops&gt;)" in page
    # The next edition in the list's own time zone, at its cron time there.
    nxt = cron.next_fire("30 6 * * *", "Asia/Tokyo", dt.datetime.now(dt.timezone.utc)).astimezone(ZoneInfo("Asia/Tokyo"))
    assert f"Tokyo &lt;Morning&gt;</a>: {nxt:%Y-%m-%d} 06:30 JST (Asia/Tokyo)" in page
    count = redis_client.llen(key("dead-letters"))
    assert f'<span id="dead-letter-count">{count}</span>' in page
    for queue in ("ingest", "feeds", "webhooks", "newsletter"):
        assert f"<td>{queue}</td>" in page
    assert config["id"] in page
    registry.remove(partner)  # partners are shared by the run: a leftover would match every later event
