"""Pure webhook code: signatures a partner verifies, payloads valid against the schema, the SSRF policy, the retry policy."""

from __future__ import annotations

import base64
import email.utils
import random
import time

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from conftest import load_seed
from syndicate.errors import ValidationFailed
from syndicate.schemas import problems
from syndicate.webhooks import payload, policy, signing
from syndicate.webhooks.guard import BlockedDestination, Guard
from syndicate.webhooks.outcome import Outcome
from syndicate.webhooks.registry import check_config

SCHEDULE = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)


# --- signing ---------------------------------------------------------------

def test_secret_is_whsec_base64_of_24_to_64_bytes():
    secret = signing.new_secret()
    assert secret.startswith("whsec_")
    assert 24 <= len(base64.b64decode(secret[6:])) <= 64
    assert signing.new_secret() != secret
    with pytest.raises(ValueError):
        signing.new_secret(16)


def test_signature_verifies_with_standardwebhooks():
    secret = signing.new_secret()
    body = payload.encode({"type": "article.published", "data": {"headline": "Kyiv — “quoted” ü"}})
    headers = signing.headers([secret], "msg_1", int(time.time()), body)
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(body, headers)["data"]["headline"] == "Kyiv — “quoted” ü"


def test_signature_covers_the_exact_bytes_and_the_id():
    secret = signing.new_secret()
    body = b'{"a":1}'
    headers = signing.headers([secret], "msg_1", int(time.time()), body)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"a": 1}', headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, {**headers, "webhook-id": "msg_2"})
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(body, headers)


def test_rotation_sends_both_signatures_and_each_secret_verifies():
    old, new = signing.new_secret(), signing.new_secret()
    body = b'{"x":true}'
    headers = signing.headers([new, old], "msg_9", int(time.time()), body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(old).verify(body, headers) == {"x": True}
    assert Webhook(new).verify(body, headers) == {"x": True}


def test_no_live_secret_is_an_error():
    with pytest.raises(ValueError):
        signing.sign([], "msg", 1, b"{}")


# --- payload ---------------------------------------------------------------

def _event(article, event_type="article.published"):
    return {"id": "evt_1", "type": event_type, "timestamp": "2026-02-05T12:30:00.000Z", "article": article,
            "article_id": article["id"], "version": article["version"], "section": article["section"]}


@pytest.mark.parametrize("full", [False, True])
def test_seed_event_body_is_valid_and_carries_the_story(full):
    article = load_seed()
    body = payload.event_body(_event(article), "https://news.example", full_article=full)
    assert problems("event", body) == []
    data = body["data"]
    assert data["headline"] == article["headline"]
    assert data["quickLooks"]["items"] == article["quickLooks"]["items"]
    assert data["leadImage"]["credit"] == "AP Photo/Sergei Grits"
    assert data["feeds"]["main"]["rss"] == "https://news.example/feeds/all.rss"
    assert data["feeds"]["section"]["atom"] == "https://news.example/feeds/sections/us.atom"
    assert ("article" in data) is full
    if full:
        assert problems("article", data["article"]) == []


def test_retracted_event_and_test_event_are_valid():
    article = {**load_seed(), "status": "retracted"}
    body = payload.event_body(_event(article, "article.retracted"), "http://127.0.0.1:8000")
    assert problems("event", body) == [] and body["data"]["status"] == "retracted"
    assert problems("event", payload.test_body("acme", "2026-02-05T12:30:00Z")) == []


def test_event_schema_rejects_unknown_fields_and_types():
    body = payload.event_body(_event(load_seed()), "http://x.example")
    assert problems("event", {**body, "extra": 1})
    assert problems("event", {**body, "type": "article.deleted"})
    assert problems("event", {**body, "data": {**body["data"], "headline": ""}})


def test_article_without_lead_image_has_no_lead_image():
    article = {**load_seed(), "images": []}
    body = payload.event_body(_event(article), "http://x.example")
    assert "leadImage" not in body["data"] and problems("event", body) == []


# --- partner configuration -------------------------------------------------

def test_partner_config_problems_have_paths():
    guard = Guard()
    with pytest.raises(ValidationFailed) as caught:
        check_config({"name": "Bad Name", "url": "ftp://x", "eventTypes": ["article.deleted"], "colour": 1}, guard)
    paths = {p.path for p in caught.value.problems}
    assert {"$.name", "$.url", "$.eventTypes[0]", "$.colour"} <= paths


def test_partner_headers_cannot_replace_signature_headers():
    with pytest.raises(ValidationFailed) as caught:
        check_config({"name": "p", "url": "https://p.example/h", "headers": {"Webhook-Signature": "x"}}, Guard())
    assert caught.value.problems[0].path.startswith("$.headers")


@pytest.mark.parametrize("config, path", [
    ({"name": "abc\n"}, "$.name"),
    ({"url": "https://p.example/h\n"}, "$.url"),
    ({"sections": ["World\n"]}, "$.sections[0]"),
    ({"headers": {"X-Key": "v\n"}}, '$.headers["X-Key"]'),
    ({"headers": {"X-Key": "v\r\nX-Injected: 1"}}, '$.headers["X-Key"]'),
    ({"headers": {"X-Key": " v"}}, '$.headers["X-Key"]'),
    ({"headers": {"X-Key\n": "v"}}, "$.headers"),
    ({"headers": {"WEBHOOK-ID": "x"}}, '$.headers["WEBHOOK-ID"]'),
    ({"headers": {"webhook-anything": "x"}}, '$.headers["webhook-anything"]'),
    ({"headers": {"content-TYPE": "text/plain"}}, '$.headers["content-TYPE"]'),
])
def test_a_trailing_newline_or_a_reserved_header_is_refused_at_its_path(config, path):
    # Python's $ matches before a final newline: the schema's patterns must not let "abc\n" through.
    with pytest.raises(ValidationFailed) as caught:
        check_config({"name": "p", "url": "https://p.example/h", **config}, Guard())
    assert [p.path for p in caught.value.problems] == [path]


def test_request_headers_keep_ours_whatever_the_case():
    from syndicate.webhooks.transport import request_headers

    sent = request_headers({"X-Key": "1", "Content-type": "text/plain", "WEBHOOK-ID": "evil", "Webhook-Extra": "x"},
                           {"webhook-id": "msg_1", "webhook-timestamp": "1", "webhook-signature": "v1,x"})
    assert {k.lower(): v for k, v in sent.items()} == {
        "x-key": "1", "content-type": "application/json", "user-agent": sent["User-Agent"],
        "webhook-id": "msg_1", "webhook-timestamp": "1", "webhook-signature": "v1,x"}
    assert len(sent) == 6  # no second spelling of any header


def test_https_only_refuses_http_partner():
    with pytest.raises(ValidationFailed) as caught:
        check_config({"name": "p", "url": "http://p.example/h"}, Guard(https_only=True))
    assert "https" in caught.value.problems[0].message
    check_config({"name": "p", "url": "https://p.example/h"}, Guard(https_only=True))


# --- SSRF guard ------------------------------------------------------------

@pytest.mark.parametrize("address,reason", [
    ("127.0.0.1", "loopback"), ("127.9.9.9", "loopback"), ("::1", "loopback"),
    ("169.254.169.254", "metadata"), ("169.254.10.1", "link-local"), ("fe80::1", "link-local"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"),
    ("100.64.0.1", "carrier-grade NAT"), ("224.0.0.251", "multicast"), ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"), ("0.0.0.0", "unspecified"), ("fd12:3456::1", "unique-local"),
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "metadata"), ("64:ff9b::10.0.0.1", "private"),
])
def test_guard_refuses_internal_addresses(address, reason):
    with pytest.raises(BlockedDestination) as caught:
        Guard().check_address("partner.example", address)
    assert reason in caught.value.message
    assert "SYNDICATE_WEBHOOK_ALLOW_NETWORKS" in caught.value.message


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_guard_allows_public_addresses(address):
    assert str(Guard().check_address("partner.example", address)) == address


def test_allowlist_opens_only_its_networks_including_mapped_forms():
    guard = Guard.of(["127.0.0.0/8"])
    guard.check_address("localhost", "127.0.0.1")
    guard.check_address("localhost", "::ffff:127.0.0.1")
    for refused in ("::1", "169.254.169.254", "10.0.0.1"):
        with pytest.raises(BlockedDestination):
            guard.check_address("h", refused)


def test_guard_checks_url_form():
    for url in ("ftp://x.example/", "file:///etc/passwd", "http://user:pw@x.example/", "http:///nohost"):
        with pytest.raises(BlockedDestination):
            Guard().check_url(url)
    with pytest.raises(BlockedDestination):
        Guard(https_only=True).check_url("http://x.example/")
    Guard(https_only=True).check_url("https://x.example/")


# --- retry policy ----------------------------------------------------------

def _fail(status=500, retry_after=None):
    return Outcome(status, 1.0, "boom", retry_after=retry_after)


def test_success_and_410():
    assert policy.decide(Outcome(204, 1.0), 1, SCHEDULE, None, 0, 86400).action == "succeeded"
    decision = policy.decide(_fail(410), 1, SCHEDULE, None, 0, 86400)
    assert decision.action == "disable" and "410" in decision.reason


@pytest.mark.parametrize("status", [None, 301, 302, 400, 429, 500, 503])
def test_anything_but_2xx_is_retried(status):
    assert policy.decide(_fail(status), 1, SCHEDULE, 0, 0, 86400).action == "retry"


def test_schedule_steps_with_jitter_then_dead_letter():
    rng = random.Random(7)
    for done, base in enumerate(SCHEDULE[1:], start=1):
        for _ in range(50):
            decision = policy.decide(_fail(), done, SCHEDULE, 0, 0, 10 * 86400, rng)
            assert decision.action == "retry"
            assert base * 0.8 <= decision.delay <= base * 1.2
    last = policy.decide(_fail(), len(SCHEDULE), SCHEDULE, 0, 0, 10 * 86400, rng)
    assert last.action == "failed" and "8 attempts" in last.reason


def test_retry_after_is_honoured_and_clamped():
    schedule = (0, 1, 1)
    assert policy.decide(_fail(429, "30"), 1, schedule, 0, 0, 86400).delay == pytest.approx(30)
    # Never sooner than our own schedule says.
    assert policy.decide(_fail(503, "1"), 1, (0, 600), 0, 0, 86400).delay >= 480
    assert policy.decide(_fail(503, "9999999"), 1, schedule, 0, 0, 86400).delay == policy.RETRY_AFTER_MAX
    now = time.time()
    date = email.utils.formatdate(now + 120, usegmt=True)
    assert 100 <= policy.decide(_fail(503, date), 1, schedule, now, now, 86400 * 5).delay <= 121
    assert policy.decide(_fail(503, "soon"), 1, schedule, 0, 0, 86400).delay <= 1.2


def test_continuous_failure_disables_after_the_period():
    day = 86400
    assert policy.decide(_fail(), 2, SCHEDULE, failing_since=0, now=4 * day, disable_after_seconds=5 * day).action == "retry"
    decision = policy.decide(_fail(), 2, SCHEDULE, failing_since=0, now=5 * day, disable_after_seconds=5 * day)
    assert decision.action == "disable" and "5 days" in decision.reason


def test_since_reads_times_and_ages():
    from syndicate.webhooks.timeparse import parse_since

    assert parse_since("2026-02-05T07:30:00Z") == parse_since("2026-02-05T02:30:00-05:00")
    assert parse_since("2h", now=10_000) == 10_000 - 7200
    assert parse_since("90m", now=10_000) == 10_000 - 5400
    with pytest.raises(ValidationFailed):
        parse_since("last tuesday")
