"""Dates (issue 8, class 3): every date-time the schema accepts is handled, or it is a 422.

One parser (syndicate.dates) serves both schema engines and every channel. The
tests: a table of RFC 3339 edge cases through the real API, unit tests of the
parser, and a property test that generates RFC 3339-shaped strings (out-of-range
fields, lower-case letters, leap seconds, extreme offsets, long fractions,
trailing bytes) and compares both engines and the parser with an oracle written
from RFC 3339 itself.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import INGEST_AUTH, load_seed, unique_article

from syndicate import dates, schemas
from syndicate.feeds.model import feed_spec
from syndicate.feeds.render import render_feed
from syndicate.config import get_settings
from syndicate.store import key

UTC = dt.timezone.utc

# value -> the UTC instant it stands for, or None when it must be refused with 422
TABLE: dict[str, dt.datetime | None] = {
    "2026-11-25T09:30:00-05:00": dt.datetime(2026, 11, 25, 14, 30, tzinfo=UTC),
    "2026-11-25t09:30:00z": dt.datetime(2026, 11, 25, 9, 30, tzinfo=UTC),
    "2026-11-25T09:30:00-00:00": dt.datetime(2026, 11, 25, 9, 30, tzinfo=UTC),
    "2016-12-31T23:59:60Z": dt.datetime(2016, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    "2016-12-31T18:59:60.5-05:00": dt.datetime(2016, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    "2026-11-25T09:30:00.123456789Z": dt.datetime(2026, 11, 25, 9, 30, 0, 123_456, tzinfo=UTC),
    "2026-11-25T09:30:00.1" + "9" * 200 + "+01:00": dt.datetime(2026, 11, 25, 8, 30, 0, 199_999, tzinfo=UTC),
    "2024-02-29T00:00:00Z": dt.datetime(2024, 2, 29, tzinfo=UTC),
    "2026-11-25T09:30:00+23:59": dt.datetime(2026, 11, 24, 9, 31, tzinfo=UTC),
    "0001-01-02T00:00:00Z": dt.datetime(1, 1, 2, tzinfo=UTC),
    "9999-12-30T23:59:59.999999Z": dt.datetime(9999, 12, 30, 23, 59, 59, 999_999, tzinfo=UTC),
    # Refused: outside Python's years once in UTC, or within a day of their edge.
    "0001-01-01T00:00:00+14:00": None,
    "0001-01-01T23:59:59Z": None,
    "9999-12-31T23:59:59-14:00": None,
    "9999-12-31T00:00:00Z": None,
    # Refused: not RFC 3339.
    "0000-01-01T00:00:00Z": None,
    "2023-02-29T00:00:00Z": None,
    "2026-13-01T00:00:00Z": None,
    "2026-11-25T24:00:00Z": None,
    "2026-11-25T09:61:00Z": None,
    "2026-11-25T09:30:61Z": None,
    "2026-11-25T09:30:00+24:00": None,
    "2026-11-25T09:30:00+0100": None,
    "2026-11-25T09:30:00": None,
    "2026-11-25 09:30:00Z": None,
    "2026-11-25T09:30Z": None,
    "2026-11-25T09:30:00.Z": None,
    "2026-11-25T09:30:00Z\n": None,
    "2026-11-25T09:30:00Z ": None,
    " 2026-11-25T09:30:00Z": None,
    "２０２６-11-25T09:30:00Z": None,
    "2026-11-25T09:30:00.١Z": None,
    "2026-11-25ı09:30:00Z": None,
    "": None,
}


@pytest.mark.parametrize("value", list(TABLE), ids=[repr(v)[:40] for v in TABLE])
def test_parse_table(value):
    expected = TABLE[value]
    if expected is None:
        with pytest.raises(dates.DateError):
            dates.parse(value)
        assert not dates.is_valid(value)
    else:
        parsed = dates.parse(value)
        assert parsed == expected and parsed.tzinfo == UTC
        assert dates.parse(dates.format_utc(parsed)) == parsed.replace(microsecond=parsed.microsecond // 1000 * 1000)


def test_parse_refuses_non_strings():
    for value in (None, 1, 1.5, [], {}):
        with pytest.raises(dates.DateError):
            dates.parse(value)  # type: ignore[arg-type]


def test_api_accepts_exactly_what_the_parser_accepts_and_orders_by_instant(api_server, http, redis_client):
    accepted: list[tuple[dt.datetime, str]] = []
    for value, expected in TABLE.items():
        article = unique_article(datePublished=value, dateModified=value)
        article["corrections"] = [{"date": value, "text": "A correction."}]
        response = http.post(f"{api_server}/v1/articles", data=json.dumps(article).encode(),
                             headers={**INGEST_AUTH, "Content-Type": "application/json"})
        if expected is None:
            assert response.status_code == 422, (value, response.status_code, response.text[:300])
            paths = {p["path"] for p in response.json()["problems"]}
            assert paths == {"$.datePublished", "$.dateModified", "$.corrections[0].date"}, (value, paths)
        else:
            assert response.status_code == 202, (value, response.text[:300])
            stored = http.get(f"{api_server}/v1/articles/{article['id']}", headers=INGEST_AUTH)
            assert stored.status_code == 200 and stored.json() == article
            accepted.append((expected, article["id"]))
    ids = {article_id for _, article_id in accepted}
    # The live-article index is ordered by the instant each date stands for, leap seconds included.
    listed = [m for m in redis_client.zrange(key("articles"), 0, -1) if m in ids]
    assert listed == [article_id for _, article_id in sorted(accepted)]


def test_feeds_render_every_accepted_extreme():
    articles = []
    for i, (value, expected) in enumerate(TABLE.items()):
        if expected is not None:
            article = load_seed()
            article.update(id=f"d{i}", datePublished=value, dateModified=value)
            articles.append(article)
    rendered = render_feed(feed_spec("all", get_settings()), articles, len(articles))
    assert rendered  # all three formats built: nothing raised on year 1, year 9999 or a leap second


# --- property: both schema engines and the parser agree with RFC 3339 ---------------------------

def _oracle(year, month, day, hour, minute, second, fraction, sign, off_h, off_m) -> dt.datetime | None:
    """What RFC 3339 (section 5.6 and 5.7) and Python's year range say the value is."""
    if not (1 <= year and 1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
        return None
    if hour > 23 or minute > 59 or second > 60 or off_h > 23 or off_m > 59:
        return None
    micro = int((fraction + "000000")[:6]) if fraction else 0
    if second == 60:
        second, micro = 59, 999_999
    # timedelta arithmetic is exact; a float of seconds would blur microseconds near year 9999.
    origin = dt.datetime(1, 1, 1)
    since = dt.datetime(year, month, day, hour, minute, second, micro) - origin
    since -= dt.timedelta(seconds=sign * (off_h * 3600 + off_m * 60))
    if not dt.timedelta(days=1) <= since <= dt.datetime(9999, 12, 30, 23, 59, 59, 999_999) - origin:
        return None
    return origin.replace(tzinfo=UTC) + since


@st.composite
def rfc3339ish(draw):
    year = draw(st.one_of(st.integers(0, 9999), st.sampled_from([0, 1, 2, 1970, 2016, 9998, 9999])))
    def field(valid_to: int, edge_to: int, valid_from: int = 0) -> int:
        # Mostly in range, so accepted values are common; sometimes just past either edge.
        return draw(st.one_of(st.integers(valid_from, valid_to), st.integers(0, edge_to)))

    month, day = field(12, 13, 1), field(28, 32, 1)
    hour, minute, second = field(23, 25), field(59, 61), field(60, 61)
    fraction = draw(st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=12)))
    zone = draw(st.sampled_from(["Z", "z", "+", "-"]))
    off_h, off_m = field(14, 25), field(59, 61)
    sep = draw(st.sampled_from(["T", "t", "T", "T", " "]))
    tail = draw(st.sampled_from(["", "", "", "", "", "\n", " ", "Z"]))
    text = f"{year:04d}-{month:02d}-{day:02d}{sep}{hour:02d}:{minute:02d}:{second:02d}"
    text += f".{fraction}" if fraction else draw(st.sampled_from(["", "", "."]))
    text += zone if zone in "Zz" else f"{zone}{off_h:02d}:{off_m:02d}"
    sign = -1 if zone == "-" else 1
    if zone in "Zz":
        off_h = off_m = 0
    malformed = sep == " " or tail != "" or ".Z" in text.upper() or ".+" in text or ".-" in text
    expected = None if malformed else _oracle(year, month, day, hour, minute, second, fraction, sign, off_h, off_m)
    return text + tail, expected


@given(rfc3339ish())
@example(("0001-01-01T00:00:00+14:00", None))
@example(("9999-12-31T23:59:59-14:00", None))
@example(("2016-12-31T23:59:60Z", dt.datetime(2016, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_schema_acceptance_equals_parser_success(case):
    value, expected = case
    try:
        parsed = dates.parse(value)
    except dates.DateError:
        parsed = None
    assert parsed == expected, value
    article = {**load_seed(), "datePublished": value}
    slow = schemas.validator("article").is_valid(article)
    fast = schemas._fast_validator("article")
    assert slow == (parsed is not None), value
    if fast is not None:
        assert fast.is_valid(article) == slow, value
    assert (schemas.problems("article", article) == []) == slow, value
