"""Five-field cron expressions evaluated in a list's own time zone (pure).

``previous_fire(expr, tz, now)`` answers the one question the beat task asks:
"which scheduled slot is the latest one not after now?". An edition is keyed by
that slot, so however often (or however many times) beat runs, one slot names
one edition.

Fields: minute hour day-of-month month day-of-week, with ``*``, lists, ranges,
steps and names (``jan``, ``mon``); ``@hourly``, ``@daily``, ``@weekly``,
``@monthly`` and ``@yearly`` too. As in Vixie cron, when both day fields are
restricted a day matches if either does. Wall-clock times are matched in the
time zone: a time skipped by a spring-forward jump fires an hour later (as
zoneinfo reads it), and a time the autumn repeats fires once, the first time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_MONTHS = {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}
_DAYS = {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}
# (name, low, high, names) per field, in expression order.
_FIELDS = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
# How far back (or ahead) to look: a valid expression such as "0 0 29 2 *" fires
# at least once in any eight years.
_SEARCH_DAYS = 366 * 8 + 2


class CronError(ValueError):
    """The expression or time zone is malformed; the message says which part."""


@dataclasses.dataclass(frozen=True)
class Cron:
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool

    def day_matches(self, day: dt.date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return dom or dow
        return dom and dow


def _value(token: str, names: dict[str, int], field: str) -> int:
    token = token.strip().lower()
    if token in names:
        return names[token]
    if not token.isdigit():
        raise CronError(f"{field}: {token!r} is not a number" + (" or a name" if names else ""))
    return int(token)


def _parse_field(text: str, field: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        rng, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{field}: step {step_text!r} must be a positive whole number")
            step = int(step_text)
        if rng == "*":
            start, end = low, high
        elif "-" in rng:
            a, _, b = rng.partition("-")
            start, end = _value(a, names, field), _value(b, names, field)
        else:
            start = _value(rng, names, field)
            end = high if step_text else start
        if not (low <= start <= high and low <= end <= high) or start > end:
            raise CronError(f"{field}: {part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return values


def parse(expr: str) -> Cron:
    """Parse a cron expression; raise CronError naming the bad field."""
    text = MACROS.get(expr.strip().lower(), expr)
    parts = text.split()
    if len(parts) != 5:
        raise CronError(f"{expr!r} needs 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}")
    sets = [_parse_field(p, *spec) for p, spec in zip(parts, _FIELDS)]
    weekdays = {d % 7 for d in sets[4]}  # 7 is Sunday too
    return Cron(
        minutes=tuple(sorted(sets[0])),
        hours=tuple(sorted(sets[1])),
        days=frozenset(sets[2]),
        months=frozenset(sets[3]),
        weekdays=frozenset(weekdays),
        days_restricted=parts[2] != "*",
        weekdays_restricted=parts[4] != "*",
    )


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(f"unknown time zone {name!r}; use an IANA name such as Europe/Paris") from None


def _wall_times(cron: Cron, day: dt.date, reverse: bool):
    hours = reversed(cron.hours) if reverse else cron.hours
    for hour in hours:
        minutes = reversed(cron.minutes) if reverse else cron.minutes
        for minute in minutes:
            yield dt.datetime.combine(day, dt.time(hour, minute))


def previous_fire(expr: str | Cron, tz: str | ZoneInfo, now: dt.datetime) -> dt.datetime | None:
    """The latest scheduled instant at or before ``now`` (aware, UTC), or None."""
    cron = parse(expr) if isinstance(expr, str) else expr
    tzinfo = zone(tz) if isinstance(tz, str) else tz
    limit = now.timestamp()
    local_day = now.astimezone(tzinfo).date()
    for back in range(_SEARCH_DAYS):
        day = local_day - dt.timedelta(days=back)
        if not cron.day_matches(day):
            continue
        for wall in _wall_times(cron, day, reverse=True):
            instant = wall.replace(tzinfo=tzinfo)
            if instant.timestamp() <= limit:
                return instant.astimezone(dt.timezone.utc)
    return None


def next_fire(expr: str | Cron, tz: str | ZoneInfo, now: dt.datetime) -> dt.datetime | None:
    """The earliest scheduled instant strictly after ``now`` (aware, UTC), or None."""
    cron = parse(expr) if isinstance(expr, str) else expr
    tzinfo = zone(tz) if isinstance(tz, str) else tz
    limit = now.timestamp()
    local_day = now.astimezone(tzinfo).date()
    for ahead in range(-1, _SEARCH_DAYS):
        day = local_day + dt.timedelta(days=ahead)
        if not cron.day_matches(day):
            continue
        for wall in _wall_times(cron, day, reverse=False):
            instant = wall.replace(tzinfo=tzinfo)
            if instant.timestamp() > limit:
                return instant.astimezone(dt.timezone.utc)
    return None
