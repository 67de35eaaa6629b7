"""The one-round-trip ingest and fan-out scripts keep what the WATCH transactions guaranteed (issue 12).

``decide`` stays the specification: every answer of ``events.ingest`` is checked against it, and
what the script writes must be what ``_record_event`` (still the retraction's path) writes.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
import redis

from conftest import unique_article
from syndicate import events, retention
from syndicate.ingest import PUBLISHED, RETRACTED, UPDATED, canonical_json, decide, digest, normalize
from syndicate.store import key
from syndicate.workers.base import CHANNEL_TASKS


def _stored_state(redis_client, article_id: str, event_id: str) -> dict:
    """What a write left in the store for one article and its event (times left out)."""
    meta = redis_client.hgetall(key("article", article_id))
    entries = [fields for _id, fields in redis_client.xrange(key("events"))
               if fields["id"] == event_id]
    return {
        "meta": meta,
        "listed": redis_client.zscore(key("articles"), article_id),
        "record": redis_client.get(key("event", event_id)),
        "ttl_set": redis_client.ttl(key("event", event_id)) > 0,
        "log": entries,
        "pending": redis_client.zscore(key("events:pending"), event_id) is not None,
        "whole": redis_client.zscore(retention.full_key(), article_id) is not None,
    }


@pytest.mark.parametrize("status", ["published", "retracted"])
def test_the_script_writes_what_record_event_writes(redis_client, status):
    article = normalize(unique_article(status=status, section="Économie — world"))
    by_script = events.ingest(article)
    written = _stored_state(redis_client, article["id"], by_script.event_id)

    twin = {**article, "id": article["id"] + "-twin"}
    event = {**json.loads(written["record"]), "article": twin, "article_id": twin["id"],
             "id": events.new_event_id()}
    with redis_client.pipeline() as pipe:
        events._record_event(pipe, event, twin, digest(twin))
        pipe.execute()
    expected = _stored_state(redis_client, twin["id"], event["id"])

    assert json.loads(written["record"]) == {**event, "id": by_script.event_id, "article": article,
                                             "article_id": article["id"]}
    assert json.loads(expected["record"]) == event
    # Both paths frame the same canonical article JSON the same way, byte for byte.
    assert written["record"] == expected["record"].replace(twin["id"], article["id"]).replace(
        event["id"], by_script.event_id)
    assert written["record"].endswith(f', "article": {canonical_json(article)}}}')
    assert written["meta"] == {**expected["meta"], "json": canonical_json(article),
                               "digest": digest(article), "event_id": by_script.event_id}
    assert written["log"] == [{**expected["log"][0], "id": by_script.event_id, "article_id": article["id"]}]
    for name in ("listed", "ttl_set", "pending", "whole"):
        assert written[name] == expected[name], name
    assert written["listed"] is None if status == "retracted" else written["listed"] > 0
    assert by_script.event_type == (RETRACTED if status == "retracted" else PUBLISHED)


def _cases():
    # (stored version or None, stored status, incoming version, same content?, incoming status)
    for stored in (None, 3):
        for stored_status in ("published", "retracted"):
            if stored is None and stored_status == "retracted":
                continue
            for incoming in (2, 3, 4):
                for same in (True, False):
                    for status in ("published", "retracted"):
                        yield stored, stored_status, incoming, same, status


@pytest.mark.parametrize("stored,stored_status,incoming,same,status", list(_cases()))
def test_every_answer_is_the_one_decide_gives(redis_client, stored, stored_status, incoming, same, status):
    base = unique_article(status=stored_status, version=stored or 1)
    first = events.ingest(base) if stored is not None else None
    before = redis_client.hgetall(key("article", base["id"]))
    sent = {**base, "version": incoming, "status": status}
    if not same:
        sent["headline"] = base["headline"] + " (corrected)"
    elif stored is not None and incoming == stored:
        sent["status"] = stored_status  # the very same document
        status = stored_status
    stored_meta = None if first is None else events.Stored(stored, before["digest"], first.event_id, stored_status)
    expected = decide(stored_meta, incoming, digest(normalize(sent)), status)

    result = events.ingest(sent)

    assert result.outcome == expected.outcome
    after = redis_client.hgetall(key("article", base["id"]))
    if expected.outcome == "event":
        assert result.event_type == expected.event_type
        assert after["version"] == str(incoming) and after["event_id"] == result.event_id
        assert events.get_event(result.event_id)["type"] == expected.event_type
    else:
        assert after == before  # nothing written
        assert result.event_id == (first.event_id if expected.outcome == "duplicate" else None)
        assert result.reason == expected.reason


def test_an_update_over_a_trimmed_story_stores_it_whole_again(redis_client):
    article = unique_article()
    events.ingest(article)
    article_key = key("article", article["id"])
    redis_client.hset(article_key, mapping={"trimmed_at": "1", "retract_digest": "abc"})
    redis_client.zrem(retention.full_key(), article["id"])

    result = events.ingest({**article, "version": article["version"] + 1})

    assert result.event_type == UPDATED
    assert "trimmed_at" not in redis_client.hgetall(article_key)
    assert "retract_digest" not in redis_client.hgetall(article_key)
    assert redis_client.zscore(retention.full_key(), article["id"]) is not None


def test_concurrent_writers_of_one_id_never_interleave(redis_client):
    article = unique_article()
    results: list[events.IngestResult] = []
    lock = threading.Lock()

    def write(version: int) -> None:
        result = events.ingest({**article, "version": version, "headline": f"{article['headline']} v{version}"})
        with lock:
            results.append(result)

    threads = [threading.Thread(target=write, args=(v,)) for v in range(1, 25)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    accepted = [r for r in results if r.outcome == "event"]
    assert {r.outcome for r in results} <= {"event", "stale"}
    meta = redis_client.hgetall(key("article", article["id"]))
    newest = max(accepted, key=lambda r: r.version)
    # The stored version, its JSON, its event and the log agree: the last write was whole.
    assert meta["version"] == "24" == str(newest.version) and meta["event_id"] == newest.event_id
    assert json.loads(meta["json"])["headline"].endswith(" v24")
    assert events.get_event(newest.event_id)["article"]["version"] == 24
    logged = [f for _id, f in redis_client.xrange(key("events")) if f["article_id"] == article["id"]]
    assert sorted(f["id"] for f in logged) == sorted(r.event_id for r in accepted)
    # Each accepted event was logged over a lower version: versions in the log only grow.
    assert [int(f["version"]) for f in logged] == sorted(int(f["version"]) for f in logged)


def test_fan_out_owes_every_channel_and_logs_its_receipt_in_one_step(redis_client):
    result = events.ingest(unique_article())
    receipts = key("receipts", "ingest-test")
    now = time.time()

    receipt = json.dumps({"subject": result.event_id})
    assert events.fan_out(result.event_id, tuple(CHANNEL_TASKS), (receipts, receipt, 5))

    assert redis_client.zscore(key("events:pending"), result.event_id) is None
    for channel in CHANNEL_TASKS:
        assert redis_client.zscore(events.owed_key(channel), result.event_id) >= now - 1
        events.settle(channel, result.event_id)
    assert json.loads(redis_client.lindex(receipts, 0)) == {"subject": result.event_id}


def test_fan_out_of_a_dropped_record_owes_nothing(redis_client):
    event_id = events.new_event_id()
    redis_client.zadd(key("events:pending"), {event_id: 1})
    receipts = key("receipts", "ingest-test-gone")

    assert not events.fan_out(event_id, tuple(CHANNEL_TASKS), (receipts, "{}", 5))

    assert redis_client.zscore(key("events:pending"), event_id) is None
    assert all(redis_client.zscore(events.owed_key(c), event_id) is None for c in CHANNEL_TASKS)
    assert redis_client.llen(receipts) == 0
