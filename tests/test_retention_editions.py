"""A sent edition is compacted to its counts and its problem recipients; one that may still send is not.

Real Redis and a real SMTP server on loopback (tests/newsletter_fixtures.py).
"""

from __future__ import annotations

from conftest import ADMIN_AUTH
from newsletter_fixtures import addresses, built_edition, smtp_sink

from syndicate import retention
from syndicate.newsletter import editions, lists, service


def test_a_sent_edition_keeps_its_counts_and_problem_recipients_only(api_server, http):
    sink = smtp_sink()
    readers = addresses(4, "compact")
    sink.refuse.add(readers[1])
    try:
        config, eid = built_edition(readers)
        assert service.run_edition(eid)["state"] == "sent"
        counts = editions.tally(eid)
        assert counts["sent"] == 3 and counts["refused"] == 1
        refused = editions.recipient_statuses(eid, "refused")
        assert eid in editions.finished_editions(0)

        assert editions.compact(eid) == 3
        assert editions.recipient_statuses(eid) == refused  # the problem stays, the sent records went
        assert editions.tally(eid) == counts
        r = lists.get_redis()
        assert not r.exists(editions.ed_key(eid, "rcpt")) and eid not in editions.finished_editions(0)
        assert 0 < r.ttl(editions.ed_key(eid, "status")) <= 90 * 86400  # still expires with the edition
        shown = http.get(f"{api_server}/v1/newsletters/{config['id']}/editions/{eid}", headers=ADMIN_AUTH).json()
        assert shown["counts"] == counts and shown["refused"] == refused

        # Running it again sends nobody: a sent edition is over, compacted or not.
        service.run_edition(eid)
        assert [sink.count(a) for a in readers] == [1, 0, 1, 1]
    finally:
        sink.refuse.discard(readers[1])


def test_an_edition_that_may_still_send_keeps_every_record():
    readers = addresses(2, "keep")
    _config, sending = built_edition(readers)  # built: "sending", nobody sent yet
    editions.record(sending, readers[0], "sent", "250 ok")
    assert editions.compact(sending) == 0
    assert set(editions.recipient_statuses(sending)) == {readers[0]}
    assert lists.get_redis().exists(editions.ed_key(sending, "rcpt"))

    # A failed edition can be resumed: every record stays, so the resume sends each reader once.
    editions.fail(sending, "test: credentials refused", 90)
    assert editions.compact(sending) == 0 and sending not in editions.finished_editions(0)
    assert retention.compact_editions(older_than=10**9) == {"editions": 0, "records": 0}
    assert editions.resume(sending)
    result = service.run_edition(sending)
    assert result["state"] == "sent" and smtp_sink().count(readers[0]) == 0 and smtp_sink().count(readers[1]) == 1
