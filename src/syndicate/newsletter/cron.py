"""Five-field cron expressions evaluated in a list's own time zone (pure).

``previous_fire(expr, tz, now)`` answers the one question the beat task asks:
"which scheduled slot is the latest one not after now?". An edition is keyed by
that slot, so however often (or however many times) beat runs, one slot names
one edition.

Fields: minute hour day-of-month month day-of-week, with ``*``, lists, ranges,
steps and names (``jan``, ``mon``), cronsim's ``L``, ``LW`` and ``#`` too;
``@hourly``, ``@daily``, ``@weekly``, ``@monthly`` and ``@yearly``. As in Vixie
cron, when neither day field starts with ``*`` a day matches if either does.

The expression is parsed and the calendar walked by cronsim, a maintained,
dependency-free evaluator that follows Debian (Vixie) cron's rules, the day-field
OR rule included. It was chosen over croniter because croniter 7.0 fires
"30 1 * * *" twice on the night New York's clocks go back (two editions of a
daily list), while the schedule here must name each slot once. cronsim walks
wall-clock times; zoneinfo turns each into an instant with ``fold=0`` (PEP 495):
a time the autumn repeats fires once, the first time, and a time skipped by a
spring-forward jump fires once, an hour later by the clock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
# (name, what it takes) per field, in expression order: cronsim only says "Bad <field>".
_FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day of month", "1-31, L or LW"),
    ("month", "1-12 or jan-dec"),
    ("day of week", "0-7 or sun-sat, 5L, 5#2"),
)
# The wall-clock walk starts this far beyond now: a clock change moves a wall time
# against its instant by at most two hours (tzdata has no larger seasonal shift), so
# no slot that belongs to the answer lies outside the window.
_MARGIN = dt.timedelta(hours=3)
# Parsing does not depend on the start time; any naive datetime will do.
_ANY_TIME = dt.datetime(2000, 1, 1)
_PARSE_ERRORS = (CronSimError, ValueError, IndexError)


class CronError(ValueError):
    """The expression or time zone is malformed; the message says which part."""


@dataclasses.dataclass(frozen=True)
class Cron:
    expr: str  # always five fields, macros expanded
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    sim: CronSim = dataclasses.field(repr=False, compare=False)

    def day_matches(self, day: dt.date) -> bool:
        return day.month in self.sim.months and self.sim.match_day(day)

    def walk(self, start: dt.datetime, reverse: bool) -> CronSim:
        """Matching naive wall-clock times strictly after (or before) ``start``."""
        return CronSim(self.expr, start, reverse=reverse)


def parse(expr: str) -> Cron:
    """Parse a cron expression; raise CronError naming the bad field."""
    text = MACROS.get(expr.strip().lower(), expr)
    parts = text.split()
    if len(parts) != 5:
        raise CronError(f"{expr!r} needs 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}")
    # Each field alone first, so the message can name the one that is wrong.
    for index, (name, takes) in enumerate(_FIELDS):
        alone = ["*"] * 5
        alone[index] = parts[index]
        try:
            CronSim(" ".join(alone), _ANY_TIME)
        except _PARSE_ERRORS:
            raise CronError(f"{name}: {parts[index]!r} is not valid; it takes {takes}, '*', "
                            "lists (1,2), ranges (1-5) and steps (*/15)") from None
    try:
        sim = CronSim(" ".join(parts), _ANY_TIME)
    except _PARSE_ERRORS:
        raise CronError(f"{expr!r} never fires: day of month {parts[2]!r} does not occur "
                        f"in month {parts[3]!r}") from None
    return Cron(" ".join(parts), tuple(sorted(sim.minutes)), tuple(sorted(sim.hours)), sim)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(f"unknown time zone {name!r}; use an IANA name such as Europe/Paris") from None


def _wall_start(now: dt.datetime, tzinfo: ZoneInfo) -> dt.datetime:
    # Fires fall on whole minutes, so dropping the fraction of a second changes no answer.
    return now.astimezone(tzinfo).replace(tzinfo=None, microsecond=0)


def previous_fire(expr: str | Cron, tz: str | ZoneInfo, now: dt.datetime) -> dt.datetime | None:
    """The latest scheduled instant at or before ``now`` (aware, UTC), or None."""
    cron = parse(expr) if isinstance(expr, str) else expr
    tzinfo = zone(tz) if isinstance(tz, str) else tz
    limit = now.timestamp()
    for wall in cron.walk(_wall_start(now, tzinfo) + _MARGIN, reverse=True):
        instant = wall.replace(tzinfo=tzinfo)
        if instant.timestamp() <= limit:
            return instant.astimezone(dt.timezone.utc)
    return None  # cronsim gives up after fifty years without a match


def next_fire(expr: str | Cron, tz: str | ZoneInfo, now: dt.datetime) -> dt.datetime | None:
    """The earliest scheduled instant strictly after ``now`` (aware, UTC), or None."""
    cron = parse(expr) if isinstance(expr, str) else expr
    tzinfo = zone(tz) if isinstance(tz, str) else tz
    limit = now.timestamp()
    for wall in cron.walk(_wall_start(now, tzinfo) - _MARGIN, reverse=False):
        instant = wall.replace(tzinfo=tzinfo)
        if instant.timestamp() > limit:
            return instant.astimezone(dt.timezone.utc)
    return None
