"""The retry policy at its edges: jitter both ways, zero steps, Retry-After dates, "0: never disable".

Each test fails on a small break of ``webhooks/policy.py`` (a mutant) that the
rest of the fast suite lets through.
"""

from __future__ import annotations

import email.utils
import random
import time

import pytest

from syndicate.config import load_settings
from syndicate.webhooks import policy
from syndicate.webhooks.outcome import Outcome

DAY = 86400.0


def _fail(status=503, retry_after=None):
    return Outcome(status, 1.0, "overloaded", retry_after=retry_after)


def test_documented_default_schedule_drives_the_retries(monkeypatch):
    # README: 0,5,300,1800,7200,18000,36000,36000 seconds, ±20%; eight attempts, then the dead-letter set.
    monkeypatch.delenv("SYNDICATE_WEBHOOK_RETRY_SCHEDULE", raising=False)
    schedule = load_settings().webhook_retry_schedule
    rng = random.Random(3)
    for attempts, step in zip(range(1, 8), (5, 300, 1800, 7200, 18000, 36000, 36000)):
        decision = policy.decide(_fail(), attempts, schedule, None, 0, 5 * DAY, rng)
        assert decision.action == "retry" and step * 0.8 <= decision.delay <= step * 1.2
    assert policy.decide(_fail(), 8, schedule, None, 0, 5 * DAY, rng).action == "failed"


def test_jitter_spreads_retries_below_and_above_the_step():
    rng = random.Random(11)
    delays = [policy.jittered(100.0, rng) for _ in range(200)]
    assert min(delays) < 95 and max(delays) > 105
    assert all(80 <= d <= 120 for d in delays)


def test_one_second_step_is_jittered_not_dropped():
    rng = random.Random(5)
    assert all(0.8 <= policy.jittered(1.0, rng) <= 1.2 for _ in range(50))
    assert all(0.4 <= policy.jittered(0.5, rng) <= 0.6 for _ in range(50))


def test_zero_step_means_immediately():
    assert policy.jittered(0) == 0.0
    decision = policy.decide(_fail(), 1, (0, 0, 5), None, 0, DAY)
    assert decision == policy.Decision("retry", 0.0, "HTTP 503: overloaded")


def test_callers_random_source_makes_the_delay_reproducible():
    first = policy.decide(_fail(), 2, (0, 5, 300), None, 0, DAY, random.Random(42))
    again = policy.decide(_fail(), 2, (0, 5, 300), None, 0, DAY, random.Random(42))
    assert first.delay == again.delay == 300 * (1 + random.Random(42).uniform(-0.2, 0.2))


def test_retry_reason_is_what_the_partner_answered():
    assert policy.decide(_fail(), 1, (0, 5), None, 0, DAY).reason == "HTTP 503: overloaded"
    timeout = Outcome(None, 15000.0, "read timeout after 15 s")
    assert policy.decide(timeout, 1, (0, 5), None, 0, DAY).reason == "read timeout after 15 s"


def test_410_reason_tells_the_operator_to_re_enable():
    decision = policy.decide(_fail(410), 1, (0, 5), None, 0, DAY)
    assert decision.reason == "the partner answered 410 Gone: the endpoint is disabled until re-enabled"


def test_disable_after_zero_means_never():
    # README: SYNDICATE_WEBHOOK_DISABLE_AFTER_DAYS ... (0: never).
    decision = policy.decide(_fail(), 1, (0, 5), failing_since=0, now=365 * DAY, disable_after_seconds=0)
    assert decision.action == "retry"


def test_disable_after_a_short_period_still_disables():
    decision = policy.decide(_fail(), 1, (0, 5), failing_since=100, now=102, disable_after_seconds=1)
    assert decision.action == "disable"


def test_retry_after_date_is_read_against_the_given_clock():
    # The policy is pure: an HTTP-date counts from the ``now`` it is given, not from the wall clock.
    now = 1_000_000_000.0
    date = email.utils.formatdate(now + 600, usegmt=True)
    assert policy.parse_retry_after(date, now) == pytest.approx(600)
    decision = policy.decide(_fail(503, date), 1, (0, 5), None, now, DAY, random.Random(1))
    assert decision.delay == pytest.approx(600)


def test_retry_after_date_without_a_clock_counts_from_now():
    date = email.utils.formatdate(time.time() + 3600, usegmt=True)
    assert 3000 < policy.parse_retry_after(date) <= 3600


def test_retry_after_date_in_the_past_means_no_extra_wait():
    assert policy.parse_retry_after("Thu, 01 Jan 2009 00:00:00 GMT", now=2_000_000_000) == 0.0
