"""Fault suite: the broker delivering every task twice, and poison stories.

Both tests queue their work while no worker runs, change the broker's queues or
the stored records directly in Redis, and only then start the workers, so the
injection does not depend on timing.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import time
import uuid

import requests

from conftest import ROOT
from faults_harness import (
    ADMIN_TOKEN, LIST_ID, PREFIX, Burst, Deployment, command, make_articles, row, wait_until,
)

DUP_LOAD = 40
POISON_NEIGHBOURS = 30
CHANNEL_QUEUES = ("feeds", "webhooks", "newsletter")


def _drained(deployment: Deployment, queues=("ingest", "feeds", "newsletter")) -> bool:
    depths = deployment.queue_depths()
    return all(depths[q] == 0 for q in queues) and deployment.unacked() == 0


def test_every_task_delivered_twice_has_each_effect_once():
    with Deployment() as deployment:
        deployment.start(workers=(), beat=False, warm_up=False)
        burst = Burst(deployment.api_url, make_articles(DUP_LOAD, uuid.uuid4().hex[:6])).join()
        assert len(burst.accepted) == DUP_LOAD, burst.statuses
        wait_until(lambda: deployment.queue_depths()["ingest"] >= DUP_LOAD, 30, "every fan-out queued")
        deployment.duplicate_queue("ingest")
        deployment.start_worker("ingest")
        wait_until(lambda: _drained(deployment, ("ingest",)) and all(
            deployment.queue_depths()[q] >= DUP_LOAD for q in CHANNEL_QUEUES), 120, "the fan-outs to run")
        # However often the fan-out sent them, every channel message is now on its queue at least twice.
        for queue in CHANNEL_QUEUES:
            deployment.duplicate_queue(queue)
        depths = deployment.queue_depths()
        assert all(depths[q] >= 2 * DUP_LOAD for q in CHANNEL_QUEUES), depths
        started = time.monotonic()
        deployment.start_worker("channels")
        deployment.start_worker("webhooks")
        deployment.start_proc("beat", "beat", "--loglevel", "WARNING")
        tally, _ = deployment.wait_delivered(burst.accepted, timeout=180)
        elapsed = time.monotonic() - started
        copies = ", ".join(f"{q} {depths[q] / DUP_LOAD:.0f}x" for q in CHANNEL_QUEUES)
        row("every task delivered twice", f"{DUP_LOAD} articles, 2 partners, 1 list",
            f"ingest messages pushed twice, then channel messages pushed twice ({copies} per event)",
            tally.lost_text(), tally.dup_text(), f"{elapsed:.0f} s to all delivered (no fault to recover from)",
            command("test_faults_broker.py::test_every_task_delivered_twice_has_each_effect_once"))
        assert tally.complete(), f"lost: {tally.lost_text()}"
        assert tally.dup_feed == 0, f"{tally.dup_feed} repeated items in the main feed"
        for partner, repeats in tally.dup_partner_event.items():
            assert repeats == 0, f"partner {partner} got {repeats} extra requests for events it already had"
        staged = deployment.client.hgetall(f"{PREFIX}nl:pending:{LIST_ID}")
        assert set(burst.accepted) <= set(staged), "stories missing from the pending edition"


def _names(entry: dict, article_id: str, event_id: str) -> bool:
    """Does a dead letter name this story (by article id, or by the event its task was given)?"""
    return (entry.get("article_id") == article_id or entry.get("subject") in (article_id, event_id)
            or article_id in entry.get("args", []) or event_id in entry.get("args", []))


def _letters(deployment: Deployment, channel: str, article_id: str, event_id: str) -> list[dict]:
    return [e for e in deployment.dead_letters()
            if e.get("channel") == channel and _names(e, article_id, event_id)]


def _reconcile(deployment: Deployment) -> None:
    subprocess.run([sys.executable, "-m", "syndicate.cli.main", "reconcile"], env=deployment.env(), cwd=ROOT,
                   capture_output=True, timeout=60, check=True)


def test_poison_story_per_channel_is_dead_lettered_and_the_rest_goes_on():
    with Deployment() as deployment:
        deployment.start(workers=(), beat=False, warm_up=False)
        tag = uuid.uuid4().hex[:6]
        neighbours = make_articles(POISON_NEIGHBOURS, tag)
        bad_record = {**neighbours[0], "id": f"poison-record-{tag}"}  # the article hash holds corrupt JSON
        bad_event = {**neighbours[0], "id": f"poison-event-{tag}"}  # the event's snapshot lacks a headline
        burst = Burst(deployment.api_url, [bad_record, bad_event, *neighbours]).join()
        assert len(burst.accepted) == POISON_NEIGHBOURS + 2, burst.statuses
        wait_until(lambda: deployment.queue_depths()["ingest"] >= len(burst.accepted), 30, "every fan-out queued")
        client = deployment.client
        record_event = client.hget(f"{PREFIX}article:{bad_record['id']}", "event_id")
        client.hset(f"{PREFIX}article:{bad_record['id']}", "json", '{"id": "' + bad_record["id"] + '", "headl')
        event_id = client.hget(f"{PREFIX}article:{bad_event['id']}", "event_id")
        event = json.loads(client.get(f"{PREFIX}event:{event_id}"))
        del event["article"]["headline"]
        client.set(f"{PREFIX}event:{event_id}", json.dumps(event), keepttl=True)

        started = time.monotonic()
        for group in ("main", "webhooks"):
            deployment.start_worker(group)
        deployment.start_proc("beat", "beat", "--loglevel", "WARNING")
        neighbour_ids = {a["id"] for a in neighbours}
        tally, _ = deployment.wait_delivered(neighbour_ids, timeout=180)
        elapsed = time.monotonic() - started
        expected = [("feeds", bad_record["id"], record_event), ("webhooks", bad_event["id"], event_id)]
        for channel, article_id, eid in expected:
            wait_until(lambda: _letters(deployment, channel, article_id, eid), 60,
                       f"a {channel} dead letter naming {article_id}")

        # The newsletter meets the corrupt record when it builds an edition: send one now.
        answer = requests.post(f"{deployment.api_url}/v1/newsletters/{LIST_ID}/send", timeout=30,
                               headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert answer.status_code == 202, answer.text
        expected.append(("newsletter", bad_record["id"], record_event))
        wait_until(lambda: len(deployment.smtp.messages) >= 3, 90, "the edition reaching the 3 subscribers")
        wait_until(lambda: _letters(deployment, "newsletter", bad_record["id"], record_event), 60,
                   f"a newsletter dead letter naming {bad_record['id']}")

        # Bounded: once dead-lettered, a story is not retried again by the reconciler.
        before = {c: len(_letters(deployment, c, a, e)) for c, a, e in expected}
        for _ in range(2):
            _reconcile(deployment)
            wait_until(lambda: _drained(deployment), 60, "the queues to drain after a reconcile pass")
        after = {c: len(_letters(deployment, c, a, e)) for c, a, e in expected}
        recipients = collections.Counter(r for _sender, rcpts in deployment.smtp.messages for r in rcpts)
        row("poison story per channel", f"{POISON_NEIGHBOURS} neighbours + 2 poison stories, 2 partners, 1 list",
            "article hash with corrupt JSON (feeds, newsletter edition); event snapshot without headline (webhooks)",
            f"neighbours: {tally.lost_text()}", tally.dup_text(),
            f"{elapsed:.0f} s to neighbours delivered; dead letters {before}",
            command("test_faults_broker.py::test_poison_story_per_channel_is_dead_lettered_and_the_rest_goes_on"))
        assert tally.complete(), f"neighbours of the poison stories lost: {tally.lost_text()}"
        assert tally.dup_feed == 0
        assert sorted(recipients.values()) == [1, 1, 1], f"each subscriber once: {recipients}"
        assert after == before, f"dead-lettered stories were retried again: {before} -> {after}"
        assert all(0 < n <= 3 for n in after.values()), f"retries not bounded: {after}"
