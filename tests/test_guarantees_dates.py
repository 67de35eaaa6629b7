"""The one RFC 3339 parser at its edges: lower-case letters, leap seconds, long fractions, range ends.

Every channel reads dates through ``dates.parse``; what it accepts the schema
accepts, so each edge here is an input a newsroom can send. Each test fails on
a small break of ``dates.py`` (a mutant) that the rest of the fast suite lets
through.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest

from syndicate import dates

UTC = dt.timezone.utc


@pytest.fixture()
def server_not_in_utc(monkeypatch):
    """A host whose local time zone is not UTC: results must not depend on it."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("value", ["2026-02-05t12:30:00Z", "2026-02-05T12:30:00z", "2026-02-05t12:30:00z",
                                   "2026-02-05t07:30:00-05:00"])
def test_lower_case_t_and_z_are_the_same_instant(value):
    assert dates.parse(value) == dt.datetime(2026, 2, 5, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize("value", ["2016-12-31T23:59:60Z", "2016-12-31t23:59:60z", "2016-12-31T18:59:60-05:00",
                                   "2016-12-31T23:59:60.5Z", "2016-12-31T23:59:60.123456789Z"])
def test_leap_second_is_the_last_microsecond_of_its_minute(value):
    assert dates.parse(value) == dt.datetime(2016, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)


def test_leap_second_sorts_between_its_neighbours():
    before, leap, after = (dates.parse(v) for v in
                           ("2016-12-31T23:59:59.5Z", "2016-12-31T23:59:60Z", "2017-01-01T00:00:00Z"))
    assert before < leap < after


@pytest.mark.parametrize("value,micro", [("2026-02-05T12:30:00.1234567Z", 123456),
                                         ("2026-02-05T12:30:00.123456789Z", 123456),
                                         ("2026-02-05T12:30:00.5Z", 500000)])
def test_fractions_beyond_a_microsecond_are_cut_not_refused(value, micro):
    assert dates.parse(value) == dt.datetime(2026, 2, 5, 12, 30, 0, micro, tzinfo=UTC)


@pytest.mark.parametrize("digits", range(1, 10))
def test_fractions_of_any_length_are_accepted(digits):
    # RFC 3339 puts no limit on the fraction; Python before 3.11 parsed only 3 or 6 digits.
    value = "2026-02-05T12:30:00." + "987654321"[:digits] + "Z"
    assert dates.parse(value).microsecond == int(("987654321"[:digits] + "000000")[:6])


def test_result_is_utc_whatever_the_server_time_zone(server_not_in_utc):
    when = dates.parse("2026-02-05T14:30:00+02:00")
    assert when.utcoffset() == dt.timedelta(0)
    assert (when.hour, when.minute) == (12, 30)
    assert dates.format_utc(dt.datetime(2026, 2, 5, 14, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))) == (
        "2026-02-05T12:30:00.000Z")


@pytest.mark.parametrize("value", ["0001-01-02T00:00:00Z", "9999-12-30T23:59:59.999999Z",
                                   "0001-01-02T14:00:00+14:00"])
def test_range_ends_are_accepted(value):
    assert dates.is_valid(value)
    assert dates.EARLIEST <= dates.parse(value) <= dates.LATEST


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+14:00", "0001-01-01T23:59:59Z", "9999-12-31T00:00:00Z",
                                   "9999-12-31T23:59:59-14:00"])
def test_values_outside_the_range_are_a_date_error(value):
    # Never an OverflowError or TypeError: those would be a 500 instead of a 422.
    with pytest.raises(dates.DateError):
        dates.parse(value)
    assert dates.is_valid(value) is False


def test_non_strings_are_left_to_the_type_check():
    assert dates.is_valid(20260205) is True
    assert dates.is_valid(None) is True
    with pytest.raises(dates.DateError):
        dates.parse(20260205)  # type: ignore[arg-type]


def test_format_utc_writes_milliseconds_and_z():
    assert dates.format_utc(dt.datetime(2026, 2, 5, 12, 30, 0, 123456, tzinfo=UTC)) == "2026-02-05T12:30:00.123Z"
    assert dates.format_utc(dt.datetime(2026, 2, 5, 12, 30, tzinfo=UTC)) == "2026-02-05T12:30:00.000Z"
    assert dates.parse(dates.format_utc(dates.parse("2026-02-05T12:30:00.5+01:00"))) == dt.datetime(
        2026, 2, 5, 11, 30, 0, 500000, tzinfo=UTC)


@pytest.mark.parametrize("value,reason", [
    (20260205, "must be a string"),
    ("5 February 2026", "must be an RFC 3339 date-time with a time zone offset or Z"),
    ("2026-02-05T12:30:00", "must be an RFC 3339 date-time with a time zone offset or Z"),  # no offset
    ("2026-02-30T12:30:00Z", "must be an RFC 3339 date-time with a time zone offset or Z"),
    ("0001-01-01T00:00:00Z", "is outside the supported range 0001-01-02 to 9999-12-30 once converted to UTC"),
])
def test_date_error_says_why(value, reason):
    # DateError's message is the reason a caller can show ("the message says why").
    with pytest.raises(dates.DateError) as caught:
        dates.parse(value)
    assert str(caught.value) == reason
