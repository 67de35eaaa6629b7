"""The newsletter schedule on cronsim: what a list owner relies on around clock changes and day rules."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, strategies as st

from syndicate.errors import ValidationFailed
from syndicate.newsletter import cron, listconfig

UTC = dt.timezone.utc
NY = ZoneInfo("America/New_York")
SECOND = dt.timedelta(seconds=1)


def _slots_back(expr: str, tz, now: dt.datetime, count: int) -> list[dt.datetime]:
    """The ``count`` latest slots at or before ``now``, newest first, walked as beat catches up."""
    slots = [cron.previous_fire(expr, tz, now)]
    while len(slots) < count:
        slots.append(cron.previous_fire(expr, tz, slots[-1] - SECOND))
    return slots


def test_a_time_the_autumn_repeats_names_one_edition():
    # 2026-11-01 01:30 happens twice in New York; a daily list gets one edition, the first time.
    slots = _slots_back("30 1 * * *", NY, dt.datetime(2026, 11, 1, 12, 0, tzinfo=UTC), 3)
    assert slots == [dt.datetime(2026, 11, 1, 5, 30, tzinfo=UTC),
                     dt.datetime(2026, 10, 31, 5, 30, tzinfo=UTC),
                     dt.datetime(2026, 10, 30, 5, 30, tzinfo=UTC)]
    # Going forward from before the night gives the same single slot.
    assert cron.next_fire("30 1 * * *", NY, dt.datetime(2026, 11, 1, 4, 0, tzinfo=UTC)) == slots[0]
    # During the repeated hour's second pass the slot is still the first 01:30, not a new one.
    second_pass = dt.datetime(2026, 11, 1, 6, 45, tzinfo=UTC)  # 01:45 EST
    assert cron.previous_fire("30 1 * * *", NY, second_pass) == slots[0]
    assert cron.next_fire("30 1 * * *", NY, second_pass) == dt.datetime(2026, 11, 2, 6, 30, tzinfo=UTC)


def test_a_time_the_spring_skips_still_fires_once_going_forward():
    start = dt.datetime(2026, 3, 7, 12, 0, tzinfo=UTC)
    first = cron.next_fire("30 2 * * *", NY, start)
    second = cron.next_fire("30 2 * * *", NY, first)
    assert first == dt.datetime(2026, 3, 8, 7, 30, tzinfo=UTC)  # 03:30 EDT: the skipped 02:30, an hour on
    assert second == dt.datetime(2026, 3, 9, 6, 30, tzinfo=UTC)  # back to 02:30, now EDT


def test_both_day_fields_restricted_means_either_day():
    # "On the 1st and on Fridays": 2026-02-06 is a Friday, 2026-03-01 a Sunday.
    now = dt.datetime(2026, 2, 28, 12, 0, tzinfo=UTC)
    assert cron.next_fire("0 8 1 * fri", "UTC", now) == dt.datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    assert cron.previous_fire("0 8 1 * fri", "UTC", now) == dt.datetime(2026, 2, 27, 8, 0, tzinfo=UTC)


def test_a_day_field_starting_with_a_star_means_both_as_in_vixie_cron():
    # "*/2" starts with "*", so "odd days that are Mondays" (Vixie's DOM_STAR rule), not "odd days or Mondays".
    # Mondays of February 2026: 2, 9, 16, 23; the odd ones are the 9th and the 23rd.
    now = dt.datetime(2026, 2, 20, 12, 0, tzinfo=UTC)
    assert cron.previous_fire("0 0 */2 * mon", "UTC", now) == dt.datetime(2026, 2, 9, tzinfo=UTC)
    assert cron.next_fire("0 0 */2 * mon", "UTC", now) == dt.datetime(2026, 2, 23, tzinfo=UTC)


def test_the_last_day_of_the_month_in_the_lists_zone():
    # cronsim's "L": a month-end edition at 18:00 in Tokyo is 09:00 UTC.
    now = dt.datetime(2026, 3, 15, tzinfo=UTC)
    assert cron.previous_fire("0 18 L * *", "Asia/Tokyo", now) == dt.datetime(2026, 2, 28, 9, 0, tzinfo=UTC)
    assert cron.next_fire("0 18 L * *", "Asia/Tokyo", now) == dt.datetime(2026, 3, 31, 9, 0, tzinfo=UTC)


def test_a_schedule_that_can_never_fire_is_refused_with_its_path():
    with pytest.raises(cron.CronError, match="never fires"):
        cron.parse("0 7 30 2 *")
    with pytest.raises(ValidationFailed) as info:
        listconfig.validate({"id": "ok", "name": "x", "schedule": "0 7 31 feb *", "timezone": "UTC"})
    assert {p.path for p in info.value.problems} == {"$.schedule"}


@pytest.mark.parametrize("expr", ["0 7 * * * *", "0 7 * * mon#9", "0 7 LW * *x", "@reboot", "0 7 1-L * *", ""])
def test_expressions_cronsim_would_not_take_are_a_cron_error(expr):
    with pytest.raises(cron.CronError):
        cron.parse(expr)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789*/-,LW# abcdefghijklmnopqrstuvwxyz@\t", max_size=30))
def test_any_text_is_a_schedule_or_a_cron_error(text):
    # What an admin types reaches the API: it must come back as a 422 problem, never a 500.
    try:
        parsed = cron.parse(text)
    except cron.CronError as exc:
        assert str(exc)
        return
    assert cron.previous_fire(parsed, "UTC", dt.datetime(2026, 6, 1, tzinfo=UTC)) is not None


@settings(max_examples=80, deadline=None)
@given(minute=st.sampled_from(["0", "*/20", "5,35"]),
       hour=st.sampled_from(["*", "7", "8-10"]),
       day=st.sampled_from(["*", "1", "15-20", "L", "*/3"]),
       month=st.sampled_from(["*", "jan", "2-6"]),
       weekday=st.sampled_from(["*", "mon", "sat,sun", "5#1"]),
       zone_name=st.sampled_from(["UTC", "Asia/Kolkata", "Asia/Tokyo"]),
       offset=st.integers(min_value=0, max_value=2 * 366 * 24 * 60))
def test_previous_and_next_bracket_now_with_nothing_between(minute, hour, day, month, weekday, zone_name, offset):
    # Zones without clock changes, so slots are strictly ordered and each is one instant.
    expr = f"{minute} {hour} {day} {month} {weekday}"
    now = dt.datetime(2026, 1, 1, tzinfo=UTC) + dt.timedelta(minutes=offset, seconds=17)
    before = cron.previous_fire(expr, zone_name, now)
    after = cron.next_fire(expr, zone_name, now)
    assert before <= now < after
    assert cron.next_fire(expr, zone_name, before) == after
    assert cron.previous_fire(expr, zone_name, after - SECOND) == before
    local = before.astimezone(ZoneInfo(zone_name))
    parsed = cron.parse(expr)
    assert parsed.day_matches(local.date()) and local.hour in parsed.hours and local.minute in parsed.minutes
