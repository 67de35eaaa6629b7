"""The one RFC 3339 parser every part of syndicate uses (pure).

RFC 3339 allows what Python's ``datetime.fromisoformat`` refuses or mishandles:
a leap second (``23:59:60``), lower-case ``t`` and ``z``, and offsets that move a
valid local time outside the years Python can hold (``0001-01-01T00:00:00+14:00``
is 31 December of year 0 in UTC). Schema validation and every channel go through
``parse``, so a value is either accepted and handled everywhere or refused at
ingest with a 422 naming its path.

The grammar check is ``rfc3339_validator``'s (the checker jsonschema's format
extra uses), extended to accept a leap second as RFC 3339 section 5.7 does; a
leap second is read as the last microsecond of its minute, which keeps order.
"""

from __future__ import annotations

import datetime as dt
import re

from rfc3339_validator import validate_rfc3339

# Only to find the seconds field; the grammar itself is checked by rfc3339_validator.
_SECONDS = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:)(\d{2})(\.\d+)?([^\n]*)", re.ASCII)
UTC = dt.timezone.utc
# A day's margin inside Python's years 1..9999, so converting to any time zone
# (a newsletter's, a reader's) can never overflow.
EARLIEST = dt.datetime(1, 1, 2, tzinfo=UTC)
LATEST = dt.datetime(9999, 12, 30, 23, 59, 59, 999_999, tzinfo=UTC)


class DateError(ValueError):
    """A value that is not an RFC 3339 date-time syndicate can handle; the message says why."""


def parse(value: str) -> dt.datetime:
    """An RFC 3339 date-time as an aware UTC datetime; ``DateError`` with the reason otherwise."""
    if not isinstance(value, str):
        raise DateError("must be a string")
    # Only the two letters RFC 3339 lets be lower-case are folded: str.upper() would change
    # other characters too (ß becomes SS), so the grammar would check a different text.
    text = value.replace("t", "T").replace("z", "Z")
    # fullmatch: a trailing newline, which "$" tolerates (here and in rfc3339_validator), is refused.
    match = _SECONDS.fullmatch(text)
    if match is None:
        raise DateError("must be an RFC 3339 date-time with a time zone offset or Z")
    head, seconds, fraction, zone = match.groups()
    leap = seconds == "60"
    # Python 3.10's fromisoformat reads exactly 3 or 6 fraction digits (later ones up to 6):
    # always 6, and precision past a microsecond is dropped.
    if fraction:
        fraction = (fraction + "000000")[:7]
    text = f"{head}{'59' if leap else seconds}{fraction or ''}{zone}"
    if not validate_rfc3339(text):
        raise DateError("must be an RFC 3339 date-time with a time zone offset or Z")
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except (ValueError, OverflowError):
        when = None
    if when is None or not EARLIEST <= when <= LATEST:
        raise DateError("is outside the supported range 0001-01-02 to 9999-12-30 once converted to UTC")
    if leap:
        when = when.replace(microsecond=999_999)
    return when


def is_valid(value: object) -> bool:
    """The ``date-time`` format check both schema validators use."""
    if not isinstance(value, str):
        return True  # format checks apply to strings only; "type" reports the rest
    try:
        parse(value)
    except DateError:
        return False
    return True


def timestamp(value: str) -> float:
    """Epoch seconds of an RFC 3339 date-time (see ``parse``)."""
    return parse(value).timestamp()


def format_utc(when: dt.datetime) -> str:
    """RFC 3339 in UTC with milliseconds and ``Z``: the form syndicate writes."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
