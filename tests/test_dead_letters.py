"""A task that fails for good is recorded as a dead letter and can be put back from the CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT, wait_for

from syndicate.workers.base import dead_letters


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "syndicate.cli.main", *args], cwd=ROOT, env=dict(os.environ),
                          capture_output=True, text=True, timeout=60)


@pytest.mark.both_brokers
def test_failed_task_is_kept_and_requeued(broker, celery_worker, celery_app):
    marker = f"evt_dead_letter_probe_{broker}"  # each broker's copy finds its own record
    # fanout takes one event id: two arguments make it fail for good, in the real worker.
    celery_app.send_task("syndicate.ingest.fanout", args=[marker, "unexpected"])

    def recorded():
        return [d for d in dead_letters(200) if d["args"] == [marker, "unexpected"]]

    first = wait_for(recorded, message="the dead letter")[0]
    assert first["task"] == "syndicate.ingest.fanout" and first["queue"] == "ingest"
    assert "TypeError" in first["error"]

    listing = cli("dead-letters", "list", "--limit", "200")
    assert listing.returncode == 0 and marker in listing.stdout

    requeued = cli("dead-letters", "requeue", "--all")
    assert requeued.returncode == 0 and "requeued" in requeued.stdout
    # Put back on its queue, it runs again in the worker (and, still broken, is recorded again).
    wait_for(lambda: len(recorded()) == 1 and recorded()[0]["at"] > first["at"], message="the requeued task to run again")


def test_list_shows_channel_article_and_error_of_every_record_shape(redis_client):
    import json
    import uuid

    from syndicate import deadletters
    from syndicate.store import key

    article = f"t-{uuid.uuid4().hex[:12]}"
    # A story a channel skipped, with the task that redoes it; one with no task at all; and a
    # record in the older shape (queue, no channel, no kwargs, no article).
    deadletters.record("feeds", "ValueError: the date is out of range\nsecond line", task="syndicate.feeds.render",
                       args=["all"], article_id=article)
    deadletters.record("newsletter", "KeyError: 'quickLooks'", article_id=f"{article}-b")
    legacy = {"queue": "webhooks", "task": "syndicate.webhooks.deliver", "args": ["msg_legacy"],
              "error": "ConnectionError: refused", "at": 1.0}
    redis_client.lpush(key("dead-letters"), json.dumps(legacy))

    listing = cli("dead-letters", "list", "--limit", "3")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert len(lines) == 3
    legacy_line, taskless_line, skipped_line = lines
    assert "webhooks" in legacy_line and "ConnectionError: refused" in legacy_line and "msg_legacy" in legacy_line
    assert "newsletter" in taskless_line and f"{article}-b" in taskless_line and "KeyError" in taskless_line
    assert "cannot be requeued" in taskless_line
    assert "feeds" in skipped_line and article in skipped_line
    assert "ValueError: the date is out of range second line" in skipped_line  # one line per record
    assert 'syndicate.feeds.render ["all"]' in skipped_line
    # Made-up tasks must not be requeued by a later test: take these records out again.
    for raw in redis_client.lrange(key("dead-letters"), 0, 2):
        redis_client.lrem(key("dead-letters"), 1, raw)


def test_requeue_keeps_records_that_name_no_task(redis_client):
    import uuid

    from syndicate import deadletters

    article = f"t-{uuid.uuid4().hex[:12]}"
    deadletters.record("newsletter", "a story with no task to redo it", article_id=article)
    requeued = cli("dead-letters", "requeue", "--all")
    assert requeued.returncode == 0, requeued.stderr
    assert "without a task stay listed" in requeued.stdout
    assert [d for d in dead_letters(10_000) if d.get("article_id") == article]
