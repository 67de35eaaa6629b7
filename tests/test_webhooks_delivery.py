"""Deliveries against real Redis and real HTTP sinks on loopback, driven through the service layer.

Each test registers its own partners on a section of its own, so events of
other tests never reach them. Retries use a short schedule passed in.
"""

from __future__ import annotations

import time
import uuid

import pytest

from conftest import unique_article
from syndicate import events
from syndicate.webhooks import deliveries, policy, registry, service
from syndicate.webhooks.guard import Guard
from webhooks_fixtures import Answer, sinks, verify  # noqa: F401  (sinks is a fixture)

LOOPBACK = Guard.of(["127.0.0.0/8"])
SHORT = (0, 0.2, 0.2)


@pytest.fixture()
def partners(redis_client):
    names: list[str] = []

    def make(url: str, **config):
        name = f"p-{uuid.uuid4().hex[:10]}"
        record, secret = registry.add({"name": name, "url": url, **config}, LOOPBACK)
        names.append(name)
        return name, secret

    yield make
    for name in names:
        try:
            registry.remove(name)
        except Exception:
            pass


def ctx(**changes):
    return service.context(**{"guard": LOOPBACK, "schedule": SHORT, **changes})


def publish(section: str, **changes) -> str:
    result = events.ingest(unique_article(section=section, **changes))
    return result.event_id


def section() -> str:
    return f"Sec {uuid.uuid4().hex[:8]}"


def run_until_done(delivery_id: str, context, timeout: float = 15.0) -> dict:
    """Play the beat: attempt whenever the delivery is due, until it is no longer pending."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = deliveries.get(delivery_id)
        if record["status"] != "pending":
            return record
        due = deliveries.due_at(delivery_id)
        if due is not None and due <= time.time():
            service.attempt(delivery_id, context)
        time.sleep(0.02)
    pytest.fail(f"delivery {delivery_id} still pending after {timeout}s")


def first_attempt(event_id: str, context) -> list[str]:
    ids = [d for d, _p in service.dispatch(event_id, context)]
    for delivery_id in ids:
        service.attempt(delivery_id, context)
    return ids


def test_delivery_verifies_as_a_partner_would_and_matches_the_schema(sinks, partners):
    sink = sinks()
    sec = section()
    name, secret = partners(sink.url, sections=[sec], headers={"X-Api-Key": "k-123"})
    event_id = publish(sec)
    [delivery_id] = first_attempt(event_id, ctx())
    [request] = sink.requests()
    body = verify(secret, request)
    from syndicate.schemas import problems

    assert problems("event", body) == []
    assert body["type"] == "article.published"
    assert body["data"]["section"] == sec and "article" not in body["data"]
    assert request.headers["webhook-id"] == delivery_id
    assert request.headers["x-api-key"] == "k-123"
    assert request.headers["content-type"] == "application/json"
    record = service.show(delivery_id)
    assert record["status"] == "succeeded" and record["attempts"] == 1
    assert record["attempt_log"][0]["status_code"] == 200
    assert record["attempt_log"][0]["latency_ms"] > 0


def test_full_article_option_and_filters(sinks, partners):
    full, updates_only, other_section = sinks(), sinks(), sinks()
    sec = section()
    _n1, secret = partners(full.url, sections=[sec], fullArticle=True)
    partners(updates_only.url, sections=[sec], eventTypes=["article.updated"])
    partners(other_section.url, sections=[section()])
    first_attempt(publish(sec), ctx())
    body = verify(secret, full.requests()[0])
    assert body["data"]["article"]["body"]["blocks"][0]["type"] == "paragraph"
    assert updates_only.count() == 0 and other_section.count() == 0


def test_retries_keep_webhook_id_refresh_timestamp_and_succeed(sinks, partners):
    sink = sinks().answer(Answer(500, body=b"down"), Answer(503))
    sec = section()
    _name, secret = partners(sink.url, sections=[sec])
    [delivery_id] = first_attempt(publish(sec), ctx())
    record = run_until_done(delivery_id, ctx())
    assert record["status"] == "succeeded"
    got = sink.requests()
    assert len(got) == 3
    assert {r.headers["webhook-id"] for r in got} == {delivery_id}
    assert len({r.body for r in got}) == 1
    for request in got:
        verify(secret, request)
    log = service.show(delivery_id)["attempt_log"]
    assert [a["status_code"] for a in log] == [500, 503, 200]
    assert [a["result"] for a in log] == ["retry", "retry", "succeeded"]
    assert log[0]["response_body"] == "down"
    # each retry waited its step of the schedule (0.2 s ± 20%)
    assert all(0.15 <= a["next_attempt_at_raw"] - a["at_raw"] <= 0.25 for a in _raw_log(delivery_id)[:2])


def _raw_log(delivery_id):
    return [{"at_raw": a["at"], "next_attempt_at_raw": a["next_attempt_at"]} for a in deliveries.attempts(delivery_id)]


def test_exhausted_schedule_is_a_dead_letter_that_can_be_resent(sinks, partners):
    sink = sinks(Answer(500))
    sec = section()
    name, secret = partners(sink.url, sections=[sec])
    [delivery_id] = first_attempt(publish(sec), ctx())
    record = run_until_done(delivery_id, ctx())
    assert record["status"] == "failed" and sink.count() == len(SHORT)
    assert "gave up after 3 attempts" in record["failure_reason"]
    failed = service.listing(partner=name, status="failed")
    assert [d["id"] for d in failed] == [delivery_id]
    # resend: a new round, same webhook-id and body
    sink.default = Answer(200)
    service.resend(delivery_id, ctx())
    assert service.attempt(delivery_id, ctx())["result"] == "succeeded"
    assert sink.requests()[-1].headers["webhook-id"] == delivery_id
    assert sink.requests()[-1].body == sink.requests()[0].body
    verify(secret, sink.requests()[-1])
    assert service.listing(partner=name, status="failed") == []
    assert service.show(delivery_id)["attempts"] == len(SHORT) + 1


def test_recover_resends_failed_deliveries_since_a_time(sinks, partners):
    sink = sinks(Answer(500))
    sec = section()
    name, _secret = partners(sink.url, sections=[sec])
    context = ctx(schedule=(0,))
    old = first_attempt(publish(sec), context)[0]
    cut = time.time()
    time.sleep(0.01)
    recent = [first_attempt(publish(sec), context)[0] for _ in range(2)]
    assert all(deliveries.get(d)["status"] == "failed" for d in [old, *recent])
    assert service.ping(name, context)["status"] == "failed"  # a failed ping is not a missed delivery
    assert sorted(service.recover(name, cut, context)) == sorted(recent)
    assert deliveries.get(old)["status"] == "failed"
    assert all(deliveries.get(d)["status"] == "pending" for d in recent)


def test_retry_after_is_recorded_and_respected(sinks, partners):
    sink = sinks().answer(Answer(429, headers={"Retry-After": "2"}))
    sec = section()
    partners(sink.url, sections=[sec])
    [delivery_id] = first_attempt(publish(sec), ctx())
    note = deliveries.attempts(delivery_id)[0]
    assert note["retry_after"] == "2"
    assert note["next_attempt_at"] - note["at"] >= 2.0
    assert deliveries.due_at(delivery_id) == pytest.approx(note["next_attempt_at"])


def test_410_disables_the_partner(sinks, partners):
    sink = sinks().answer(Answer(410))
    sec = section()
    name, _ = partners(sink.url, sections=[sec])
    [delivery_id] = first_attempt(publish(sec), ctx())
    assert deliveries.get(delivery_id)["status"] == "failed"
    partner = registry.get(name)
    assert partner["enabled"] is False and "410" in partner["disabledReason"]
    # new events no longer match; the delivery log says why
    assert service.dispatch(publish(sec), ctx()) == []
    assert "410" in service.show(delivery_id)["failure_reason"]


def test_disabled_partner_fails_pending_retries_with_a_clear_reason(sinks, partners):
    sink = sinks().answer(Answer(500))
    sec = section()
    name, _ = partners(sink.url, sections=[sec])
    [delivery_id] = first_attempt(publish(sec), ctx())
    registry.set_enabled(name, False)
    record = run_until_done(delivery_id, ctx())
    assert record["status"] == "failed" and "disabled" in record["last_error"]
    assert "partners recover" in record["last_error"]  # the log says how to resume
    assert sink.count() == 1
    assert deliveries.due_at(delivery_id) is None  # nothing more is scheduled for a disabled partner
    # Enabling does not resume by itself (decided: marked failed, resumed by recover); recover re-sends.
    registry.set_enabled(name, True)
    assert deliveries.get(delivery_id)["status"] == "failed"
    sink.default = Answer(200)
    assert service.recover(name, time.time() - 60, ctx()) == [delivery_id]
    assert service.attempt(delivery_id, ctx())["result"] == "succeeded"
    assert sink.count() == 2 and sink.requests()[-1].headers["webhook-id"] == delivery_id


@pytest.mark.parametrize("retry_after, low, high", [
    ("999999999", policy.RETRY_AFTER_MAX, policy.RETRY_AFTER_MAX),  # clamped: never days away
    ("0", policy.RETRY_AFTER_MIN, policy.RETRY_AFTER_MIN),  # clamped: never a spin
    ("http-date", 2.0, 10.0),  # an HTTP-date about 5 s ahead
    ("soon", 0.16, 0.24),  # unreadable: the schedule step (0.2 s ± 20%) stands
])
def test_retry_after_is_clamped_through_a_real_sink(sinks, partners, retry_after, low, high):
    if retry_after == "http-date":
        import email.utils

        retry_after = email.utils.formatdate(time.time() + 5, usegmt=True)
    sink = sinks().answer(Answer(503, headers={"Retry-After": retry_after}))
    sec = section()
    partners(sink.url, sections=[sec])
    [delivery_id] = first_attempt(publish(sec), ctx())
    note = deliveries.attempts(delivery_id)[0]
    assert note["result"] == "retry" and note["retry_after"] == retry_after
    assert low <= note["next_attempt_at"] - note["at"] <= high
    assert deliveries.due_at(delivery_id) == pytest.approx(note["next_attempt_at"])


def test_retry_delays_are_jittered_20_percent_either_way(sinks, partners):
    sink = sinks(Answer(500))
    sec = section()
    partners(sink.url, sections=[sec])
    context = ctx(schedule=(0, 100))
    delays = []
    for _ in range(20):
        [delivery_id] = first_attempt(publish(sec), context)
        note = deliveries.attempts(delivery_id)[0]
        delays.append(note["next_attempt_at"] - note["at"])
    assert all(80 <= d <= 120 for d in delays)
    # both sides of the step are used, so retries of many deliveries spread out
    assert min(delays) < 100 < max(delays) and len({round(d, 3) for d in delays}) > 10


def test_continuous_failure_disables_the_partner(sinks, partners):
    sink = sinks(Answer(500))
    sec = section()
    name, _ = partners(sink.url, sections=[sec])
    context = ctx(schedule=(0, 0.2, 0.2, 0.2, 0.2), disable_after_seconds=0.3)
    [delivery_id] = first_attempt(publish(sec), context)
    record = run_until_done(delivery_id, context)
    assert record["status"] == "failed"
    assert registry.get(name)["enabled"] is False
    assert "failed every attempt" in registry.get(name)["disabledReason"]


def test_redirect_is_a_failure_and_not_followed(sinks, partners):
    target = sinks()
    sink = sinks(Answer(302, headers={"Location": target.url}))
    sec = section()
    partners(sink.url, sections=[sec])
    [delivery_id] = first_attempt(publish(sec), ctx(schedule=(0,)))
    assert target.count() == 0
    note = deliveries.attempts(delivery_id)[0]
    assert note["status_code"] == 302 and "not followed" in note["error"]


def test_response_body_is_truncated_to_4_kib(sinks, partners):
    sink = sinks(Answer(500, body=b"x" * 20000))
    sec = section()
    partners(sink.url, sections=[sec])
    [delivery_id] = first_attempt(publish(sec), ctx(schedule=(0,)))
    assert len(deliveries.attempts(delivery_id)[0]["response_body"]) == 4096


def test_read_timeout_is_a_failed_attempt(sinks, partners):
    sink = sinks(Answer(hang=True))
    sec = section()
    partners(sink.url, sections=[sec])
    [delivery_id] = first_attempt(publish(sec), ctx(schedule=(0,), read_timeout=0.3))
    sink.release()
    note = deliveries.attempts(delivery_id)[0]
    assert note["status_code"] is None and "read timeout" in note["error"]


@pytest.mark.parametrize("where", ["loopback", "metadata"])
def test_ssrf_guard_refuses_without_the_allowance(sinks, partners, where):
    sink = sinks()
    url = sink.url if where == "loopback" else "http://169.254.169.254/latest/meta-data/"
    sec = section()
    partners(url, sections=[sec])
    strict = ctx(guard=Guard(), schedule=(0,))
    [delivery_id] = first_attempt(publish(sec), strict)
    shown = service.show(delivery_id)
    note = shown["attempt_log"][0]
    assert shown["status"] == "failed"
    assert note["sent"] is False and note["status_code"] is None
    expected = "loopback" if where == "loopback" else "cloud metadata"
    assert expected in note["error"] and "SYNDICATE_WEBHOOK_ALLOW_NETWORKS" in note["error"]
    assert sink.count() == 0


def test_ssrf_guard_checks_the_resolved_address_of_a_name(sinks, partners):
    sink = sinks()
    sec = section()
    partners(sink.url.replace("127.0.0.1", "localhost"), sections=[sec])
    [delivery_id] = first_attempt(publish(sec), ctx(guard=Guard(), schedule=(0,)))
    assert "resolved from localhost" in deliveries.attempts(delivery_id)[0]["error"]
    assert sink.count() == 0


def test_https_only_refuses_at_attempt_time(sinks, partners):
    sink = sinks()
    sec = section()
    partners(sink.url, sections=[sec])
    [delivery_id] = first_attempt(publish(sec), ctx(guard=Guard(LOOPBACK.allow, https_only=True), schedule=(0,)))
    assert "HTTPS_ONLY" in deliveries.attempts(delivery_id)[0]["error"] and sink.count() == 0


def test_secret_rotation_signs_with_both_during_grace(sinks, partners):
    sink = sinks()
    sec = section()
    name, old = partners(sink.url, sections=[sec])
    _record, new = registry.rotate(name, grace_seconds=3600)
    first_attempt(publish(sec), ctx())
    request = sink.requests()[-1]
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    verify(old, request)
    verify(new, request)
    # with no grace the old secret stops signing at once
    _record, newest = registry.rotate(name, grace_seconds=0)
    first_attempt(publish(sec), ctx())
    request = sink.requests()[-1]
    verify(newest, request)
    from standardwebhooks.webhooks import WebhookVerificationError

    with pytest.raises(WebhookVerificationError):
        verify(old, request)
    assert len(registry.public(registry.get(name))["secrets"]) == 1  # a zero grace ends every earlier secret


def test_ping_sends_a_signed_test_event(sinks, partners):
    sink = sinks()
    name, secret = partners(sink.url, sections=[section()])
    shown = service.ping(name, ctx())
    assert shown["status"] == "succeeded" and shown["test"] is True
    body = verify(secret, sink.requests()[0])
    assert body["type"] == "webhook.test" and body["data"]["partner"] == name


def test_redispatch_creates_nothing_new(sinks, partners):
    sink = sinks()
    sec = section()
    partners(sink.url, sections=[sec])
    event_id = publish(sec)
    first = first_attempt(event_id, ctx())
    assert first and service.dispatch(event_id, ctx()) == []
    assert deliveries.ids_of_event(event_id) == first and sink.count() == 1


def test_lost_attempt_comes_back_through_the_schedule(sinks, partners):
    sink = sinks()
    sec = section()
    partners(sink.url, sections=[sec])
    context = ctx(connect_timeout=0.1, read_timeout=0.1)  # lease = 0.1 + 0.3 + 30
    [(delivery_id, _p)] = service.dispatch(publish(sec), context)
    # nobody attempts it (the worker died): the drain takes it once its lease is over
    due = deliveries.due_at(delivery_id)
    assert delivery_id not in service.drain(context, now=due - 1)
    assert delivery_id in service.drain(context, now=due + 0.001)
    assert service.attempt(delivery_id, context)["result"] == "succeeded"
    assert sink.count() == 1


def test_claim_prevents_two_attempts_at_once(sinks, partners):
    sink = sinks()
    sec = section()
    partners(sink.url, sections=[sec])
    [(delivery_id, _p)] = service.dispatch(publish(sec), ctx())
    assert deliveries.claim(delivery_id, 60) == "ok"
    assert service.attempt(delivery_id, ctx()) is None
    assert sink.count() == 0


def test_retention_prunes_indexes(partners, redis_client):
    name, _ = partners("http://127.0.0.1:9/none", sections=[section()])
    entry = {"id": f"msg_old_{uuid.uuid4().hex[:6]}", "partner": name, "event_id": "evt_x", "type": "article.published",
             "article_id": "a", "body": "{}"}
    deliveries.create([entry], time.time() + 1000, 60)
    assert [d["id"] for d in service.listing(partner=name)] == [entry["id"]]
    service.prune(ctx(retention_seconds=-1))
    assert service.listing(partner=name) == []
    assert 0 < redis_client.ttl(deliveries._dkey(entry["id"])) <= 60


def test_prune_trims_every_index_and_the_schedule(sinks, partners, redis_client):
    sink = sinks(Answer(500))
    sec = section()
    name, _ = partners(sink.url, sections=[sec])
    context = ctx(schedule=(0,))
    [failed] = first_attempt(publish(sec), context)
    [(pending, _p)] = service.dispatch(publish(sec), context)
    gone = f"msg_gone_{uuid.uuid4().hex[:6]}"  # a schedule entry whose record expired
    redis_client.zadd(deliveries.key(*deliveries.SCHEDULE), {gone: time.time() + 3600})
    index, failed_set, schedule = (deliveries.key(*k) for k in (deliveries.INDEX, deliveries.FAILED, deliveries.SCHEDULE))
    per_partner = deliveries.key("webhooks", "partner-deliveries", name)
    assert redis_client.zscore(failed_set, failed) is not None
    # every key a delivery writes has a TTL: records, attempt lists, per-event and per-partner indexes
    for k in (deliveries._dkey(failed), deliveries._akey(failed), per_partner,
              deliveries.key("webhooks", "event-deliveries", deliveries.get(failed)["event_id"])):
        assert 0 < redis_client.ttl(k) <= context.retention_seconds
    service.prune(ctx(retention_seconds=-1))
    for delivery in (failed, pending):
        assert redis_client.zscore(index, delivery) is None
        assert redis_client.zscore(per_partner, delivery) is None
    assert redis_client.zscore(failed_set, failed) is None
    assert redis_client.zscore(schedule, gone) is None
    assert redis_client.zscore(schedule, pending) is not None  # a pending delivery keeps its place
    assert service.listing(partner=name) == [] and service.listing(status="failed", partner=name) == []


def test_pings_are_not_indexed_under_a_shared_event_key(sinks, partners, redis_client):
    sink = sinks()
    name, _ = partners(sink.url, sections=[section()])
    service.ping(name, ctx())
    service.ping(name, ctx())
    assert not redis_client.exists(deliveries.key("webhooks", "event-deliveries", "none"))
    assert [d["test"] for d in service.listing(partner=name)] == [True, True]


def test_settled_or_expired_deliveries_leave_the_schedule(sinks, partners, redis_client):
    sink = sinks()
    sec = section()
    partners(sink.url, sections=[sec])
    [(delivery_id, _p)] = service.dispatch(publish(sec), ctx())
    assert deliveries.discard_if_settled(delivery_id) is False  # pending: it stays
    service.attempt(delivery_id, ctx())
    assert deliveries.due_at(delivery_id) is None
    redis_client.zadd(deliveries.key(*deliveries.SCHEDULE), {"msg_expired_x": 1})
    assert deliveries.discard_if_settled("msg_expired_x") is True
    assert deliveries.due_at("msg_expired_x") is None


def test_transport_reports_failures_as_outcomes(sinks):
    from syndicate.webhooks import transport

    sink = sinks()
    # https to a loopback address is refused before any TLS byte
    refused = transport.post(sink.url.replace("http:", "https:"), b"{}", {}, Guard(), 1, 1)
    assert refused.blocked and "loopback" in refused.error
    # https to a plain-HTTP server: a TLS failure, reported, not raised
    tls = transport.post(sink.url.replace("http:", "https:"), b"{}", {}, LOOPBACK, 1, 1)
    assert tls.status is None and tls.error and not tls.ok
    closed = transport.post("http://127.0.0.1:9/none", b"{}", {}, LOOPBACK, 1, 1)
    assert closed.status is None and "refused" in closed.error.lower()
    unknown = transport.post("http://nonexistent.invalid/", b"{}", {}, LOOPBACK, 1, 1)
    assert unknown.status is None and unknown.error
