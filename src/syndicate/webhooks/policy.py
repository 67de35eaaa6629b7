"""The retry policy: the one place that decides what follows an attempt (pure).

Given the outcome, where the delivery stands in its schedule and how long the
partner has been failing, ``decide`` answers one of:

    succeeded   2xx
    retry       at ``delay`` seconds from now (schedule step ± jitter, or later if Retry-After asks)
    failed      the schedule is exhausted: the delivery is dead-lettered, kept for resend
    disable     410 Gone, or the partner failed continuously for too long:
                the delivery fails and the partner is disabled

The default schedule is Svix's: immediately, 5 s, 5 min, 30 min, 2 h, 5 h,
10 h, 10 h, each with ±20% jitter so a recovering partner is not hit by every
retry at the same instant.
"""

from __future__ import annotations

import dataclasses
import email.utils
import random
import time
from collections.abc import Sequence

from .outcome import Outcome

JITTER = 0.2
# Retry-After is honoured within these bounds: a partner may slow us down, but
# cannot make us wait for days (or spin at zero).
RETRY_AFTER_MIN = 1.0
RETRY_AFTER_MAX = 24 * 3600.0


@dataclasses.dataclass(frozen=True)
class Decision:
    action: str  # succeeded | retry | failed | disable
    delay: float = 0.0
    reason: str = ""


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def jittered(delay: float, rng: random.Random | None = None) -> float:
    if delay <= 0:
        return 0.0
    return delay * (1 + (rng or random).uniform(-JITTER, JITTER))


def decide(
    outcome: Outcome,
    attempts_in_round: int,
    schedule: Sequence[float],
    failing_since: float | None,
    now: float,
    disable_after_seconds: float,
    rng: random.Random | None = None,
) -> Decision:
    """``attempts_in_round`` counts this attempt: 1 after the first attempt of a round."""
    if outcome.ok:
        return Decision("succeeded")
    if outcome.status == 410:
        return Decision("disable", reason="the partner answered 410 Gone: the endpoint is disabled until re-enabled")
    if failing_since is not None and disable_after_seconds > 0 and now - failing_since >= disable_after_seconds:
        days = disable_after_seconds / 86400
        return Decision("disable", reason=f"the partner failed every attempt for {days:g} days; re-enable it once fixed")
    if attempts_in_round >= len(schedule):
        return Decision("failed", reason=f"gave up after {attempts_in_round} attempts: {outcome.summary()}")
    delay = jittered(schedule[attempts_in_round], rng)
    asked = parse_retry_after(outcome.retry_after, now)
    if asked is not None:
        delay = max(delay, min(max(asked, RETRY_AFTER_MIN), RETRY_AFTER_MAX))
    return Decision("retry", delay=delay, reason=outcome.summary())
