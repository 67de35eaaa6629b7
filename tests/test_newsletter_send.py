"""Editions end to end against real Redis and a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import datetime as dt
import re
import smtplib
import threading

import pytest

from conftest import unique_article
from newsletter_fixtures import addresses, make_list, publish, smtp_sink, subscribe_all

from syndicate import events
from syndicate.config import get_settings
from syndicate.newsletter import cron, editions, lists, service, tokens

UTC = dt.timezone.utc


@pytest.fixture()
def sink(redis_client):
    return smtp_sink()


def _story(section: str, **changes) -> dict:
    return unique_article(section=section, **changes)


def _send(list_id: str) -> dict:
    return service.run_edition(service.open_manual(list_id))


def test_an_edition_reaches_every_subscriber_once_with_every_header_and_both_parts(sink):
    config = make_list(subject="{{ list_name }}: {{ top_headline }}")
    section = config["sections"][0]
    story = _story(section)
    publish(story)
    readers = addresses(3)
    subscribe_all(config["id"], readers)

    result = _send(config["id"])

    assert result["state"] == "sent" and result["counts"]["sent"] == 3
    for reader in readers:
        assert sink.count(reader) == 1
        (msg,) = sink.received(reader)
        assert msg["From"] == "Newslooks <news@newslooks.example>"
        assert msg["To"] == reader
        assert msg["Subject"] == f"Morning Edition: {story['headline']}"
        assert msg["Date"].datetime.tzinfo is not None
        assert re.fullmatch(r"<[0-9a-f]{20}\.[\w-]+@newslooks\.example>", msg["Message-ID"])
        assert msg["List-Id"] == f"Morning Edition <{config['id']}.newslooks.example>"
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        https, mailto = re.fullmatch(r"<(\S+)>, <(\S+)>", msg["List-Unsubscribe"]).groups()
        assert https.startswith(get_settings().public_url + "/unsubscribe/")
        token = https.rsplit("/", 1)[1]
        assert mailto == f"mailto:unsubscribe@newslooks.example?subject=unsubscribe%20{token}"
        data = tokens.verify(get_settings().secret_key, tokens.UNSUBSCRIBE, token)
        assert lists.address_of(config["id"], data.subscriber_id) == reader
        assert reader not in token  # opaque
        text, html = msg.iter_parts()
        assert text.get_content_type() == "text/plain" and html.get_content_type() == "text/html"
        for item in story["quickLooks"]["items"]:
            assert item in text.get_content() and item in html.get_content()
        assert story["headline"] in text.get_content() and f'href="{story["url"]}"' in html.get_content()
        assert f'href="{https}"' in html.get_content() and https in text.get_content()
        assert len(html.get_content().encode()) < 100_000
    message_ids = {sink.received(r)[0]["Message-ID"] for r in readers}
    assert len(message_ids) == 3


def test_accumulate_then_rotate_and_no_story_twice(sink):
    config = make_list()
    section = config["sections"][0]
    reader = addresses(1)[0]
    subscribe_all(config["id"], [reader])
    first, second = _story(section, headline="First story"), _story(section, headline="Second story")
    publish(first)
    eid = service.open_manual(config["id"])  # rotates: `first` now belongs to this edition
    publish(second)  # staged after the rotation: next edition
    assert editions.staged(config["id"]) == [second["id"]]
    service.run_edition(eid)
    # An update to an already-sent story does not bring it back.
    publish({**first, "version": 2, "headline": "First story, updated"})
    service.run_edition(service.open_manual(config["id"]))
    subjects = [m["Subject"] for m in sink.received(reader)]
    bodies = [m.get_body(("plain",)).get_content() for m in sink.received(reader)]
    assert len(subjects) == 2
    assert "First story" in bodies[0] and "Second story" not in bodies[0]
    assert "Second story" in bodies[1] and "First story" not in bodies[1]


def test_updates_show_the_latest_version_and_retractions_are_left_out(sink):
    config = make_list()
    section = config["sections"][0]
    reader = addresses(1)[0]
    subscribe_all(config["id"], [reader])
    kept, dropped = _story(section, headline="Kept, v1"), _story(section, headline="Dropped story")
    publish(kept)
    publish(dropped)
    publish({**kept, "version": 2, "headline": "Kept, v2"})
    events.retract(dropped["id"])  # not staged again: the build reads the current article
    _send(config["id"])
    (msg,) = sink.received(reader)
    body = msg.get_body(("plain",)).get_content()
    assert "Kept, v2" in body and "Kept, v1" not in body and "Dropped story" not in body


def test_empty_editions_are_skipped_and_recorded(sink):
    config = make_list()
    reader = addresses(1)[0]
    subscribe_all(config["id"], [reader])
    result = _send(config["id"])
    assert result["state"] == "skipped" and "no new stories" in result["reason"]
    assert sink.count(reader) == 0
    assert [e["state"] for e in editions.history(config["id"])] == ["skipped"]


def test_first_edition_carries_the_last_24_hours(sink):
    config = make_list()
    section = config["sections"][0]
    reader = addresses(1)[0]
    subscribe_all(config["id"], [reader])
    now = dt.datetime.now(UTC)
    # Published before the list existed (so never staged), but within 24 h: in the first edition.
    recent = _story(section, headline="Yesterday evening", datePublished=(now - dt.timedelta(hours=5)).isoformat())
    old = _story(section, headline="Two days ago", datePublished=(now - dt.timedelta(hours=48)).isoformat())
    events.ingest(recent)
    events.ingest(old)
    _send(config["id"])
    body = sink.received(reader)[0].get_body(("plain",)).get_content()
    assert "Yesterday evening" in body and "Two days ago" not in body


def test_refused_recipients_are_recorded_and_transient_ones_retried(sink):
    config = make_list()
    publish(_story(config["sections"][0]))
    ok, refused, flaky, hopeless = addresses(4)
    sink.refuse.add(refused)
    sink.transient[flaky] = 2  # fails twice, then accepted (3 attempts allowed)
    sink.transient[hopeless] = 99
    subscribe_all(config["id"], [ok, refused, flaky, hopeless])
    result = _send(config["id"])
    assert result["counts"] == {"sent": 2, "refused": 1, "failed": 1, "doubt": 0, "skipped": 0, "pending": 0}
    assert (sink.count(ok), sink.count(refused), sink.count(flaky), sink.count(hopeless)) == (1, 0, 1, 0)
    refusals = editions.recipient_statuses(result["id"], "refused")
    assert list(refusals) == [refused] and "550" in refusals[refused]
    assert "451" in editions.recipient_statuses(result["id"], "failed")[hopeless]


def test_unsubscribed_after_the_build_is_not_sent(sink):
    config = make_list()
    publish(_story(config["sections"][0]))
    stay, leave = addresses(2)
    subscribe_all(config["id"], [stay, leave])
    eid = service.open_manual(config["id"])
    record = editions.get_edition(eid)
    assert service._build(eid, record, lists.get_redis())  # recipients snapshotted: both
    lists.remove_subscriber(config["id"], leave)
    service.run_edition(eid)
    assert (sink.count(stay), sink.count(leave)) == (1, 0)
    assert editions.tally(eid)["skipped"] == 1


def test_beat_firing_twice_opens_one_edition_and_concurrent_senders_send_once(sink):
    config = make_list(schedule="*/5 * * * *", timezone="Europe/Paris")
    publish(_story(config["sections"][0]))
    readers = addresses(40)
    subscribe_all(config["id"], readers)
    state = lists.list_state(config["id"])
    created = dt.datetime.fromtimestamp(float(state["created_at"]), UTC)
    now = cron.next_fire(config["schedule"], config["timezone"], created) + dt.timedelta(seconds=10)
    first, again = service.open_due(now), service.open_due(now + dt.timedelta(seconds=30))  # one slot
    mine = [e for e in first + again if e.startswith(config["id"] + ".")]
    assert len(mine) == 1
    # Two senders at once (a redelivered task beside the original): the lease lets one through.
    threads = [threading.Thread(target=service.run_edition, args=(mine[0],)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    service.run_edition(mine[0])  # and once more, after it finished: nothing
    assert [sink.count(r) for r in readers] == [1] * 40
    assert editions.get_edition(mine[0])["state"] == "sent"


def test_a_dead_senders_claims_are_resent_and_its_commits_are_not(sink):
    config = make_list()
    publish(_story(config["sections"][0]))
    claimed, committing, fresh = addresses(3)
    subscribe_all(config["id"], [claimed, committing, fresh])
    eid = service.open_manual(config["id"])
    service._build(eid, editions.get_edition(eid), lists.get_redis())
    # A sender that died: it claimed two, reached the final dot for one, and its lease ran out.
    assert editions.acquire_lease(eid, "dead", 30)
    editions.claim(eid, config["id"], "dead", 30, 0, 2)
    got = editions.claim(eid, config["id"], "dead", 30, 0, 3)
    assert got is not None
    editions.mark_committing(eid, "dead", 30, committing)
    editions.release_lease(eid, "dead")  # what expiry does
    # That dead sender cannot commit any more.
    assert not editions.mark_committing(eid, "dead", 30, fresh)
    service.run_edition(eid)
    statuses = {a: v.split(":", 1)[0] for a, v in editions.recipient_statuses(eid).items()}
    assert statuses[committing] == "doubt"  # may have been delivered: never sent twice
    assert statuses[claimed] == statuses[fresh] == "sent"
    assert sink.count(committing) == 0 and sink.count(claimed) == sink.count(fresh) == 1


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_smtp_url_credentials_are_used_and_a_wrong_password_fails_to_connect():
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    from conftest import free_port
    from newsletter_fixtures import SinkHandler
    from syndicate.newsletter.smtpurl import parse_smtp_url
    from syndicate.newsletter.transport import SmtpConnection

    def authenticator(server, session, envelope, mechanism, auth_data):
        # handled=False: aiosmtpd answers 535 itself (handled=True would leave the client waiting)
        return AuthResult(success=(auth_data.login, auth_data.password) == (b"desk", b"s3cr:t"), handled=False)

    handler = SinkHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, authenticator=authenticator,
                            auth_require_tls=False, auth_required=True)
    controller.start()
    try:
        good = parse_smtp_url(f"smtp://desk:s3cr%3At@127.0.0.1:{port}")
        with SmtpConnection(good) as conn:
            outcome = conn.send("desk@news.example", "auth@mail.example", b"Subject: x\r\n\r\nhello\r\n")
        assert outcome.status == "sent" and handler.count("auth@mail.example") == 1
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            SmtpConnection(parse_smtp_url(f"smtp://desk:wrong@127.0.0.1:{port}?timeout=30")).open()
        assert refused.value.smtp_code == 535
    finally:
        controller.stop()


def test_an_edition_of_a_deleted_list_is_skipped_not_retried_forever(sink):
    config = make_list()
    publish(_story(config["sections"][0]))
    eid = service.open_manual(config["id"])
    lists.delete_list(config["id"])
    result = service.run_edition(eid)
    assert result["state"] == "skipped" and result["reason"] == "the list was deleted"
    assert eid not in editions.active_editions()
