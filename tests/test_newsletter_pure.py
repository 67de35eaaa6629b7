"""Pure newsletter code: cron, tokens, list config, edition selection, rendering, the message."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from html import escape
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, strategies as st

from conftest import load_seed

from syndicate.errors import ValidationFailed
from syndicate.newsletter import cron, edition, listconfig, message, render, tokens
from syndicate.newsletter.smtpurl import parse_smtp_url

UTC = dt.timezone.utc
NY = ZoneInfo("America/New_York")


# --- cron ----------------------------------------------------------------------

def test_daily_slot_is_in_the_lists_time_zone():
    now = dt.datetime(2026, 2, 5, 13, 0, tzinfo=UTC)  # 08:00 in New York
    assert cron.previous_fire("0 7 * * *", "America/New_York", now) == dt.datetime(2026, 2, 5, 12, 0, tzinfo=UTC)
    early = dt.datetime(2026, 2, 5, 11, 59, tzinfo=UTC)  # 06:59 in New York: yesterday's slot
    assert cron.previous_fire("0 7 * * *", "America/New_York", early) == dt.datetime(2026, 2, 4, 12, 0, tzinfo=UTC)
    assert cron.next_fire("0 7 * * *", "America/New_York", early) == dt.datetime(2026, 2, 5, 12, 0, tzinfo=UTC)


def test_dst_changes_keep_the_local_hour():
    summer = dt.datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert cron.previous_fire("0 7 * * *", NY, summer) == dt.datetime(2026, 7, 1, 11, 0, tzinfo=UTC)
    # 2026-03-08 02:30 does not exist in New York: it fires once, an hour later by the clock.
    after = dt.datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
    fired = cron.previous_fire("30 2 * * *", NY, after)
    assert fired == dt.datetime(2026, 3, 8, 7, 30, tzinfo=UTC)


@pytest.mark.parametrize("expr,now,expected", [
    ("*/15 * * * *", dt.datetime(2026, 1, 1, 10, 44, tzinfo=UTC), dt.datetime(2026, 1, 1, 10, 30, tzinfo=UTC)),
    ("0 9 * * mon-fri", dt.datetime(2026, 2, 8, 12, 0, tzinfo=UTC), dt.datetime(2026, 2, 6, 9, 0, tzinfo=UTC)),
    ("0 0 1 jan *", dt.datetime(2026, 6, 1, tzinfo=UTC), dt.datetime(2026, 1, 1, tzinfo=UTC)),
    ("@weekly", dt.datetime(2026, 2, 5, tzinfo=UTC), dt.datetime(2026, 2, 1, tzinfo=UTC)),
    # Both day fields restricted: either matches (Vixie cron). 2026-02-13 is a Friday.
    ("0 0 1 * 5", dt.datetime(2026, 2, 14, tzinfo=UTC), dt.datetime(2026, 2, 13, tzinfo=UTC)),
    ("0 0 29 2 *", dt.datetime(2026, 6, 1, tzinfo=UTC), dt.datetime(2024, 2, 29, tzinfo=UTC)),
])
def test_cron_expressions(expr, now, expected):
    assert cron.previous_fire(expr, "UTC", now) == expected


@pytest.mark.parametrize("expr,fragment", [
    ("0 7 * *", "5 fields"), ("61 * * * *", "minute"), ("0 7 * * fun", "day of week"),
    ("*/0 * * * *", "step"), ("0 5-2 * * *", "hour"),
])
def test_bad_cron_says_which_field(expr, fragment):
    with pytest.raises(cron.CronError, match=fragment):
        cron.parse(expr)


def _brute_previous(c: cron.Cron, tz: ZoneInfo, now: dt.datetime) -> dt.datetime:
    t = now.astimezone(UTC).replace(second=0, microsecond=0)
    for _ in range(3 * 24 * 60):
        local = t.astimezone(tz)
        if c.day_matches(local.date()) and local.hour in c.hours and local.minute in c.minutes:
            return t
        t -= dt.timedelta(minutes=1)
    raise AssertionError("no fire in 3 days")


@settings(max_examples=60, deadline=None)
@given(minute=st.sampled_from(["*", "0", "*/7", "5,35", "10-20/5"]),
       hour=st.sampled_from(["*", "7", "*/5", "1-3", "22,23"]),
       zone_name=st.sampled_from(["UTC", "Europe/Paris", "Asia/Kolkata"]),
       offset=st.integers(min_value=0, max_value=366 * 24 * 60))
def test_previous_fire_matches_a_minute_by_minute_search(minute, hour, zone_name, offset):
    # Zones without an ambiguous wall-clock minute near these hours, so the brute force is exact.
    now = dt.datetime(2026, 1, 1, tzinfo=UTC) + dt.timedelta(minutes=offset, seconds=17)
    c = cron.parse(f"{minute} {hour} * * *")
    assert cron.previous_fire(c, zone_name, now) == _brute_previous(c, ZoneInfo(zone_name), now)


# --- tokens --------------------------------------------------------------------

def test_tokens_round_trip_and_hide_the_address():
    token = tokens.sign("k", tokens.UNSUBSCRIBE, "morning", "sid42")
    assert "@" not in token
    assert tokens.verify("k", tokens.UNSUBSCRIBE, token) == tokens.TokenData("morning", "sid42", None)


def test_tokens_reject_forgery_other_keys_and_other_purposes():
    token = tokens.sign("k", tokens.UNSUBSCRIBE, "morning", "sid42")
    body, _, mac = token.partition(".")
    forged = tokens.sign("other", tokens.UNSUBSCRIBE, "evening", "sid42").split(".")[0] + "." + mac
    for bad in (forged, body + ".AAAA", "garbage", token + "x"):
        with pytest.raises(tokens.TokenError):
            tokens.verify("k", tokens.UNSUBSCRIBE, bad)
    with pytest.raises(tokens.TokenError):
        tokens.verify("k2", tokens.UNSUBSCRIBE, token)
    with pytest.raises(tokens.TokenError):
        tokens.verify("k", tokens.CONFIRM, token)


def test_confirmation_tokens_expire():
    token = tokens.sign("k", tokens.CONFIRM, "morning", "sid", expires=1000)
    assert tokens.verify("k", tokens.CONFIRM, token, now=999).expires == 1000
    with pytest.raises(tokens.TokenError) as info:
        tokens.verify("k", tokens.CONFIRM, token, now=1001)
    assert info.value.expired


# --- list config -----------------------------------------------------------------

def test_list_config_problems_have_paths():
    with pytest.raises(ValidationFailed) as info:
        listconfig.validate({"id": "Bad Id", "name": "x", "schedule": "0 7 * *", "timezone": "Mars/Olympus",
                             "subject": "{{ oops", "colour": "red"})
    paths = {p.path for p in info.value.problems}
    assert {"$.id", "$.colour"} <= paths
    with pytest.raises(ValidationFailed) as info:
        listconfig.validate({"id": "ok", "name": "x", "schedule": "0 7 * *", "timezone": "Mars/Olympus",
                             "subject": "{{ oops", "fromAddress": "nobody"})
    assert {p.path for p in info.value.problems} == {"$.schedule", "$.timezone", "$.subject", "$.fromAddress"}


def test_email_addresses_are_checked_and_normalised():
    assert listconfig.normalize_email("  Reader@Mail.EXAMPLE ") == "Reader@mail.example"
    for bad in ("no-at-sign", "a@b", "ünï@mail.example", "a b@mail.example"):
        with pytest.raises(ValidationFailed):
            listconfig.normalize_email(bad)


def test_smtp_urls():
    cfg = parse_smtp_url("smtp+starttls://user%40x:p%3Ass@mail.example:2525?timeout=5")
    assert (cfg.host, cfg.port, cfg.security, cfg.username, cfg.password, cfg.timeout) == \
        ("mail.example", 2525, "starttls", "user@x", "p:ss", 5.0)
    assert parse_smtp_url("smtps://mail.example").port == 465
    assert parse_smtp_url("smtp://h?starttls=true").security == "starttls"


# --- edition, render, message ----------------------------------------------------

def _config(**changes):
    return listconfig.validate({"id": "morning", "name": "Morning Edition", "schedule": "0 7 * * *",
                                "timezone": "America/New_York", **changes})


def _article(i: int, section: str = "US", **changes) -> dict:
    article = load_seed()
    article.update({"id": f"story-{i}", "section": section, "headline": f"Headline {i}",
                    "datePublished": f"2026-02-05T{10 + i % 10:02d}:00:00Z", **changes})
    return article


def _edition(articles, config=None, at=dt.datetime(2026, 2, 5, 12, 0, tzinfo=UTC)) -> edition.Edition:
    config = config or _config()
    return edition.Edition("morning.x", config, edition.select(config, articles), at, "https://news.example")


def test_selection_leaves_out_retracted_and_other_sections_and_keeps_the_latest_version():
    config = _config(sections=["us"])
    stories = edition.select(config, [
        _article(1), _article(2, status="retracted"), _article(3, section="World"),
        {**_article(4), "version": 1, "headline": "old"}, {**_article(4), "version": 2, "headline": "new"},
    ], exclude=["story-9"])
    assert [s["id"] for s in stories] == ["story-4", "story-1"]  # newest first
    assert stories[0]["headline"] == "new"
    assert edition.select(config, [_article(9)], exclude=["story-9"]) == []


def test_grouping_by_section_and_the_date_in_the_lists_zone():
    ed = _edition([_article(1, "US"), _article(2, "World"), _article(3, "US")], _config(grouping="section"))
    assert [(name, [s["id"] for s in group]) for name, group in ed.groups()] == \
        [("US", ["story-3", "story-1"]), ("World", ["story-2"])]
    late = _edition([_article(1)], at=dt.datetime(2026, 2, 6, 3, 0, tzinfo=UTC))
    assert late.date_label == "Thursday, February 5, 2026"  # still the 5th in New York


def test_html_escapes_inlines_css_and_carries_every_part_of_a_story():
    seed = load_seed()
    hostile = _article(1, headline="<script>alert(1)</script> & co")
    rendered = render.render(_edition([hostile]))
    html = rendered.html
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in html
    assert 'class="headline" style="' in html  # CSS inlined from the <style> block
    assert "prefers-color-scheme: dark" in html  # @media kept for dark mode
    assert "<!--[if mso]>" in html and 'width="600"' in html
    lead = next(i for i in seed["images"] if i["role"] == "lead")
    for text in (lead["alt"], lead["caption"], lead["credit"], seed["quickLooks"]["title"], *seed["quickLooks"]["items"]):
        assert escape(text, quote=False) in html, text
    assert f'alt="{lead["alt"]}"' in html
    assert all(item in rendered.text for item in seed["quickLooks"]["items"])
    assert "[US] <script>alert(1)</script> & co" in rendered.text and seed["url"] in rendered.text
    assert edition.UNSUBSCRIBE_PLACEHOLDER in html and edition.UNSUBSCRIBE_PLACEHOLDER in rendered.text


def test_big_editions_stay_under_100_kb_with_the_rest_as_linked_headlines():
    articles = [_article(i, headline=f"Story number {i}",
                         quickLooks={"title": "Quick Looks", "items": [f"bullet {i}.{j} " + "x" * 200 for j in range(8)]})
                for i in range(60)]
    rendered = render.render(_edition(articles))
    assert len(rendered.html.encode()) < 100_000
    assert rendered.full_stories + rendered.linked_only == 60 and rendered.linked_only > 0
    assert rendered.full_stories > 0
    # Every story is still reachable: in full, or as a linked headline.
    for i in range(60):
        assert f"Story number {i}<" in rendered.html
    assert all(f"bullet {i}.7" in rendered.text for i in range(60))  # the text part keeps everything


def test_message_headers_and_parts_per_subscriber():
    rendered = render.render(_edition([_article(1)]))
    msg = message.EditionMessage(_config(fromAddress="Newslooks <news@newslooks.example>"), "morning.x",
                                 rendered.subject, rendered.html, rendered.text, "Default <d@default.example>", date=0)
    url = "https://news.example/unsubscribe/" + "A" * 120 + ".=tok"
    copy = msg.copy_for("reader@mail.example", "sid1", url, "tok-1")
    head, _, body = copy.data.partition(b"\r\n\r\n")
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))  # a URL cannot be folded
    assert all(len(line) <= 78 for line in body.split(b"\r\n"))  # quoted-printable keeps lines short
    parsed = email.message_from_bytes(copy.data, policy=email.policy.default)
    assert parsed["To"] == "reader@mail.example"
    assert parsed["Message-ID"].endswith(".sid1@newslooks.example>")
    assert parsed["List-Id"] == "Morning Edition <morning.newslooks.example>"
    assert parsed["List-Unsubscribe"] == f"<{url}>, <mailto:unsubscribe@newslooks.example?subject=unsubscribe%20tok-1>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["Date"].datetime == dt.datetime(1970, 1, 1, tzinfo=UTC)
    assert parsed.get_content_type() == "multipart/alternative"
    text, html = parsed.iter_parts()
    assert (text.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert url in text.get_content() and f'href="{url}"' in html.get_content()
    assert edition.UNSUBSCRIBE_PLACEHOLDER not in copy.data.decode()
    assert html.get_content().replace("\r\n", "\n") == rendered.html.replace(edition.UNSUBSCRIBE_PLACEHOLDER, url)
    other = msg.copy_for("b@mail.example", "sid2", url, "t")
    assert email.message_from_bytes(other.data, policy=email.policy.default)["Message-ID"] != parsed["Message-ID"]
