"""Times in and out of the webhooks log: ``--since`` values read, epoch seconds shown as RFC 3339 (pure)."""

from __future__ import annotations

import datetime as dt
import re
import time

from .. import dates
from ..errors import Problem, ValidationFailed

_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def iso(ts: float | str | None) -> str | None:
    """Epoch seconds as an RFC 3339 UTC time with milliseconds; None for nothing."""
    if ts in (None, ""):
        return None
    return dt.datetime.fromtimestamp(float(ts), dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_since(value: str, now: float | None = None) -> float:
    """An RFC 3339 time (``2026-02-05T07:30:00Z``) or an age such as ``90m``, ``2h``, ``3d``; epoch seconds."""
    now = time.time() if now is None else now
    match = _AGE.match(value.strip())
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        return dates.timestamp(value.strip())
    except dates.DateError:
        raise ValidationFailed([Problem("$.since", f"{value!r} is neither an RFC 3339 time (with Z or an offset) "
                                                   "nor an age like 2h or 3d")]) from None
