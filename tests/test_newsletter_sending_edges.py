"""Sending edge cases through the real sender and a real SMTP server (aiosmtpd) on loopback:
a connection dropped after the final dot, the rate limit, and refused SMTP credentials."""

from __future__ import annotations

import json
import warnings

import pytest
from click.testing import CliRunner

from conftest import free_port, unique_article
from newsletter_fixtures import SinkHandler, addresses, built_edition, make_list, publish, smtp_sink, subscribe_all

from syndicate.cli.main import cli
from syndicate.config import reset_settings
from syndicate.newsletter import editions, lists, service
from syndicate.newsletter.sender import RateLimiter, Sender


# aiosmtpd warns about AUTH without TLS on every connection of the auth server: loopback only.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


@pytest.fixture()
def sink(redis_client):
    return smtp_sink()


def _statuses(eid: str) -> dict[str, str]:
    return {a: v.split(":", 1)[0] for a, v in editions.recipient_statuses(eid).items()}


# --- the connection dropped after the final "." of DATA -----------------------------------

def test_a_connection_dropped_after_the_final_dot_is_recorded_doubt_and_never_resent(sink):
    before, dropped, after = addresses(3, "dot")
    sink.drop_after_data.add(dropped)
    try:
        config, eid = built_edition([before, dropped, after])
        result = service.run_edition(eid)
        # Retries happen (SYNDICATE_SMTP_RETRY_DELAYS), but not for a recipient in doubt.
        assert result["state"] == "sent"
        assert result["counts"] == {"sent": 2, "refused": 0, "failed": 0, "doubt": 1, "skipped": 0, "pending": 0}
        assert _statuses(eid) == {before: "sent", dropped: "doubt", after: "sent"}
        assert "end of DATA" in editions.recipient_statuses(eid)[dropped] or "Disconnected" in \
            editions.recipient_statuses(eid)[dropped]
        # The server did store it: resending would have been a duplicate.
        assert (sink.count(before), sink.count(dropped), sink.count(after)) == (1, 1, 1)
        # The sender opened a new connection and went on with the next recipient.
        service.run_edition(eid)
        assert sink.count(dropped) == 1
    finally:
        sink.drop_after_data.discard(dropped)


# --- the rate limit ---------------------------------------------------------------------

class FakeClock:
    """Time that moves only when slept through: the limiter's waits are read, never timed."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_limiter_spaces_messages_evenly_and_counts_time_spent_elsewhere():
    limiter = RateLimiter(4)  # 0.25 s apart
    assert limiter.delay(100.0) == 0.0  # the first goes at once
    assert limiter.delay(100.0) == pytest.approx(0.25)
    assert limiter.delay(100.0) == pytest.approx(0.5)  # a burst queues up in slots
    assert limiter.delay(100.9) == pytest.approx(0.0)  # slow sending consumed the wait ...
    assert limiter.delay(100.9) == pytest.approx(0.25)  # ... but never lends credit for a burst
    assert limiter.delay(200.0) == 0.0


def test_an_unlimited_rate_never_waits():
    clock = FakeClock()
    limiter = RateLimiter(0, clock, clock.sleep)
    for _ in range(5):
        limiter.wait()
    assert clock.slept == [] and limiter.delay(0.0) == 0.0


def test_the_limiter_sleeps_through_the_injected_sleep():
    clock = FakeClock()
    limiter = RateLimiter(2, clock, clock.sleep)
    for _ in range(4):
        limiter.wait()
    assert clock.slept == [pytest.approx(0.5)] * 3 and clock.now == pytest.approx(1001.5)


@pytest.fixture()
def slow_rate(monkeypatch):
    monkeypatch.setenv("SYNDICATE_SMTP_RATE_PER_SECOND", "0.5")
    reset_settings()
    yield 2.0
    monkeypatch.undo()
    reset_settings()


def test_the_sender_paces_a_real_send_by_the_configured_rate(sink, slow_rate):
    readers = addresses(4, "rate")
    config, eid = built_edition(readers)
    owner = "rate-test"
    assert editions.acquire_lease(eid, owner, 30)
    clock = FakeClock()
    sent_at: list[tuple[float, int]] = []

    def sleep(seconds: float) -> None:
        # Each wait comes after the previous message went out, before the next one.
        sent_at.append((clock.now, sum(sink.count(r) for r in readers)))
        clock.sleep(seconds)

    record = editions.get_edition(eid)
    Sender(eid, config["id"], json.loads(record["content"]), owner, None, lists.get_redis(),
           clock=clock, sleep=sleep).run()
    editions.release_lease(eid, owner)
    assert clock.slept == [pytest.approx(slow_rate)] * 3  # SYNDICATE_SMTP_RATE_PER_SECOND=0.5: 2 s apart
    assert [n for _, n in sent_at] == [1, 2, 3]  # one message per slot, never two
    assert [sink.count(r) for r in readers] == [1] * 4


def test_a_rate_wait_keeps_the_lease_alive(sink):
    # A slow rate may wait longer than the lease: the sender's own sleep (the limiter's default) renews it.
    config, eid = built_edition(addresses(1, "lease"))
    assert editions.acquire_lease(eid, "pacer", 30)
    sender = Sender(eid, config["id"], json.loads(editions.get_edition(eid)["content"]), "pacer", None,
                    lists.get_redis())
    assert sender.pacer.sleep == sender._sleep
    sender.ttl = 600  # renewals set the lease to the sender's ttl: seen without timing anything
    sender.pacer.sleep(0.01)
    assert lists.get_redis().pttl(editions.ed_key(eid, "lease")) > 30_000
    editions.release_lease(eid, "pacer")
    # A sender whose lease was taken over stops instead of sleeping on.
    assert editions.acquire_lease(eid, "other", 30)
    from syndicate.newsletter.sender import LeaseLost

    with pytest.raises(LeaseLost):
        sender.pacer.sleep(0.01)
    editions.release_lease(eid, "other")


# --- refused SMTP credentials -----------------------------------------------------------

@pytest.fixture()
def auth_server(redis_client):
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    def authenticator(server, session, envelope, mechanism, auth_data):
        # handled=False: aiosmtpd answers "535 5.7.8" itself (the default, handled=True, means
        # "I already replied", and a client that gets no reply waits for its socket timeout).
        ok = (auth_data.login, auth_data.password) == (b"desk", b"s3cr:t")
        return AuthResult(success=ok, handled=False)

    handler = SinkHandler()
    port = free_port()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # AUTH without TLS: loopback only
        controller = Controller(handler, hostname="127.0.0.1", port=port, authenticator=authenticator,
                                auth_require_tls=False, auth_required=True)
        controller.start()
    yield handler, port
    controller.stop()


def test_wrong_smtp_credentials_fail_the_edition_at_once_and_a_resume_sends_it(auth_server, monkeypatch):
    handler, port = auth_server
    readers = addresses(3, "auth")
    monkeypatch.setenv("SYNDICATE_SMTP_URL", f"smtp://desk:wrong@127.0.0.1:{port}?timeout=20")
    reset_settings()
    try:
        config, eid = built_edition(readers)
        result = service.run_edition(eid)
        assert result["state"] == "failed"
        reason = result["reason"]
        assert "535" in reason and "SYNDICATE_SMTP_URL" in reason and f"syndicate digest resume {eid}" in reason
        assert "wrong" not in reason  # the password is never shown
        assert eid not in editions.active_editions()  # beat does not retry it
        assert service.run_edition(eid)["state"] == "failed"  # nor does a redelivered task
        assert sum(handler.count(r) for r in readers) == 0
        assert not editions.recipient_statuses(eid, "failed") and not editions.recipient_statuses(eid, "sent")
        assert all(ttl > 0 for ttl in _edition_keys(eid).values())  # nobody resumes it: it still goes away

        runner = CliRunner()
        status = runner.invoke(cli, ["digest", "status", config["id"]])
        assert "failed" in status.output and "535" in status.output

        # The operator fixes the password and resumes: everyone gets it once.
        monkeypatch.setenv("SYNDICATE_SMTP_URL", f"smtp://desk:s3cr%3At@127.0.0.1:{port}")
        reset_settings()
        resumed = runner.invoke(cli, ["digest", "resume", eid])
        assert resumed.exit_code == 0, resumed.output
        assert editions.get_edition(eid)["state"] == "sent"
        assert [handler.count(r) for r in readers] == [1, 1, 1]
        again = runner.invoke(cli, ["digest", "resume", eid])
        assert again.exit_code == 1 and "has not failed" in again.output
    finally:
        monkeypatch.undo()
        reset_settings()


def test_a_manual_send_with_wrong_credentials_exits_non_zero_with_the_fix(auth_server, monkeypatch):
    handler, port = auth_server
    monkeypatch.setenv("SYNDICATE_SMTP_URL", f"smtp://desk:nope@127.0.0.1:{port}")
    reset_settings()
    try:
        config = make_list()
        publish(unique_article(section=config["sections"][0]))
        subscribe_all(config["id"], addresses(1, "authcli"))
        result = CliRunner().invoke(cli, ["digest", "send", config["id"], "--now"])
        assert result.exit_code == 1
        assert "FAILED" in result.output and "SYNDICATE_SMTP_URL" in result.output
    finally:
        monkeypatch.undo()
        reset_settings()


# --- nothing grows without bound ------------------------------------------------------

def _edition_keys(eid: str) -> dict[str, int]:
    r = lists.get_redis()
    return {k: r.ttl(k) for k in r.scan_iter(match=editions.ed_key(eid) + "*", count=1000)}


def test_every_key_of_an_ended_edition_expires(sink):
    from syndicate.config import get_settings
    from syndicate.store import key

    retention = get_settings().newsletter_retention_days * 86400
    reader = addresses(1, "ttl")[0]
    config, sent = built_edition([reader])
    service.run_edition(sent)
    # A skipped edition whose staged story had already gone out (an update): its rotated stories expire too.
    story = unique_article(section=config["sections"][0])
    publish(story)
    service.run_edition(service.open_manual(config["id"]))
    publish({**story, "version": 2})
    skipped = service.open_manual(config["id"])
    assert editions.edition_story_ids(skipped) == [story["id"]]
    assert service.run_edition(skipped)["state"] == "skipped"
    for eid in (sent, skipped):
        ttls = _edition_keys(eid)
        assert editions.ed_key(eid) in ttls and editions.ed_key(eid, "lease") not in ttls
        assert all(0 < ttl <= retention for ttl in ttls.values()), ttls
    assert editions.ed_key(skipped, "stories") in _edition_keys(skipped)
    assert not lists.get_redis().exists(key("nl", "pending", config["id"]))
    # A deleted list's history goes with its editions.
    lists.delete_list(config["id"])
    assert 0 < lists.get_redis().ttl(key("nl", "editions", config["id"])) <= retention


def test_unconfirmed_subscription_requests_are_forgotten_once_their_link_expired(redis_client):
    import time

    from syndicate.store import key

    config = make_list()
    lid = config["id"]
    lapsed, fresh, confirmed, came_back = addresses(4, "optin")
    subscribe_all(lid, [confirmed, came_back])
    lists.remove_subscriber(lid, came_back)  # unsubscribed, then asks again and never confirms
    for address in (lapsed, came_back):
        assert lists.request_subscription(lid, address)
    cutoff = time.time()
    assert lists.request_subscription(lid, fresh)  # asked after the cutoff: kept
    lapsed_sid = lists.get_subscriber(lid, lapsed)["sid"]

    assert lists.prune_unconfirmed(lid, cutoff) == 2
    assert lists.get_subscriber(lid, lapsed) is None and lists.address_of(lid, lapsed_sid) is None
    assert lists.get_subscriber(lid, came_back)["status"] == "unsubscribed"  # still suppressed
    assert lists.get_subscriber(lid, fresh)["status"] == "pending"
    assert lists.get_subscriber(lid, confirmed)["status"] == "confirmed"
    assert lists.counts(lid) == {"pending": 1, "confirmed": 1, "unsubscribed": 1}
    assert redis_client.zrange(key("nl", "unconfirmed", lid), 0, -1) == [fresh]
    assert lists.prune_unconfirmed(lid, cutoff) == 0
    lists.confirm(lid, lists.get_subscriber(lid, fresh)["sid"])
    assert redis_client.zcard(key("nl", "unconfirmed", lid)) == 0  # confirmed: no longer waiting


def test_confirmation_email_with_wrong_credentials_is_a_config_error_not_a_retry(auth_server, monkeypatch):
    from syndicate.errors import ConfigError

    _, port = auth_server
    config = make_list()
    address = addresses(1, "confirm")[0]
    sid = lists.request_subscription(config["id"], address)["sid"]
    monkeypatch.setenv("SYNDICATE_SMTP_URL", f"smtp://desk:bad@127.0.0.1:{port}?timeout=20")
    reset_settings()
    try:
        with pytest.raises(ConfigError, match="SYNDICATE_SMTP_URL"):
            service.send_confirmation(config["id"], sid)
    finally:
        monkeypatch.undo()
        reset_settings()


def test_the_admin_api_resumes_a_failed_edition_through_the_worker(auth_server, sink, monkeypatch, api_server,
                                                                  celery_worker, http):
    from conftest import ADMIN_AUTH, wait_for

    _, port = auth_server
    readers = addresses(2, "apiresume")
    monkeypatch.setenv("SYNDICATE_SMTP_URL", f"smtp://desk:bad@127.0.0.1:{port}")
    reset_settings()
    try:
        config, eid = built_edition(readers)
        assert service.run_edition(eid)["state"] == "failed"
    finally:
        monkeypatch.undo()
        reset_settings()  # back to the run's sink, which needs no credentials
    base = f"{api_server}/v1/newsletters/{config['id']}/editions"
    shown = http.get(f"{base}/{eid}", headers=ADMIN_AUTH).json()
    assert shown["state"] == "failed" and "535" in shown["reason"]
    assert http.post(f"{base}/nope/resume", headers=ADMIN_AUTH).status_code == 404
    assert http.post(f"{base}/{eid}/resume").status_code == 401
    response = http.post(f"{base}/{eid}/resume", headers=ADMIN_AUTH)
    assert response.status_code == 202 and response.json() == {"edition_id": eid}
    wait_for(lambda: editions.get_edition(eid).get("state") == "sent", message="resumed edition sent")
    assert [sink.count(r) for r in readers] == [1, 1]
    assert http.post(f"{base}/{eid}/resume", headers=ADMIN_AUTH).status_code == 409
