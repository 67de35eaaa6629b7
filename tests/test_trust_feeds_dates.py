"""Every date-time the schema accepts renders in every feed format (issue 8, class 3).

RFC 3339 allows a leap second (``:60``), lower-case ``t`` and ``z``, and offsets
that move a date across a year boundary; syndicate.dates.parse reads them all
(a leap second as the last microsecond of its minute). Each must come out as a
valid date in RSS (RFC 822, four-digit year), Atom and JSON Feed (RFC 3339).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import re

import feedparser
import pytest
from lxml import etree

from conftest import load_seed

from syndicate import dates
from syndicate.config import get_settings
from syndicate.feeds import feed_spec, render_feed

RFC822 = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
                    r"\d\d:\d\d:\d\d \+0000$")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)$")

ACCEPTED = [
    ("2016-12-31T23:59:60Z", dt.datetime(2016, 12, 31, 23, 59, 59, 999_999)),  # a real leap second
    ("2016-12-31t23:59:60.5z", dt.datetime(2016, 12, 31, 23, 59, 59, 999_999)),
    ("2026-02-05t07:30:00z", dt.datetime(2026, 2, 5, 7, 30)),
    ("2026-02-05T07:30:00.123456789+01:00", dt.datetime(2026, 2, 5, 6, 30, 0, 123_456)),
    ("9999-12-30T10:00:00-13:59", dt.datetime(9999, 12, 30, 23, 59)),  # the latest day the schema takes
    ("0001-01-02T13:00:00+13:00", dt.datetime(1, 1, 2)),  # the earliest
    ("0999-06-01T00:00:00Z", dt.datetime(999, 6, 1)),  # a three-digit year feedgen would not pad
]


@pytest.mark.parametrize("value, utc", ACCEPTED, ids=[v for v, _ in ACCEPTED])
def test_every_accepted_date_renders_in_every_format(value, utc):
    assert dates.parse(value) == utc.replace(tzinfo=dt.timezone.utc)  # the schema accepts it as this instant
    article = load_seed()
    article["datePublished"] = article["dateModified"] = value
    article["corrections"] = [{"date": value, "text": "A correction dated the same."}]
    result = render_feed(feed_spec("all", get_settings()), [article], 50)
    when = utc.replace(tzinfo=dt.timezone.utc)

    rss = etree.fromstring(result.documents["rss"].body)
    for text in (rss.findtext("channel/item/pubDate"), rss.findtext("channel/lastBuildDate")):
        assert RFC822.match(text), text
        assert text[5:] == email.utils.format_datetime(when.replace(microsecond=0))[5:]
    atom = etree.fromstring(result.documents["atom"].body)
    for text in atom.xpath("//*[local-name()='updated' or local-name()='published']/text()"):
        assert RFC3339.match(text), text
    item = json.loads(result.documents["json"].body)["items"][0]
    for text in (item["date_published"], item["date_modified"]):
        assert RFC3339.match(text) and dates.parse(text) == when

    for fmt in ("rss", "atom"):
        parsed = feedparser.parse(result.documents[fmt].body)
        assert parsed.bozo == 0, parsed.get("bozo_exception")
        if utc.year >= 1900:  # feedparser's own date parsers stop at time.struct_time's comfortable range
            assert tuple(parsed.entries[0].published_parsed[:5]) == when.timetuple()[:5]
    # Last-Modified is read back as the same instant (floored at 1970: older HTTP dates are misread).
    served = email.utils.parsedate_to_datetime(result.documents["rss"].last_modified)
    assert served == max(when.replace(microsecond=0), dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc))
