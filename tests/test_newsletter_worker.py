"""The newsletter queue with real Celery workers: staging, beat ticks, and a worker killed mid-send."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from conftest import ADMIN_AUTH, INGEST_AUTH, ROOT, unique_article, wait_for
from newsletter_fixtures import addresses, make_list, smtp_sink, subscribe_all

from syndicate.config import get_settings
from syndicate.newsletter import editions
from syndicate.store import delete_prefix, get_redis, key
from syndicate.workers.base import receipts

pytestmark = pytest.mark.both_brokers


@pytest.fixture()
def sink(redis_client):
    return smtp_sink()


def _post(http, url, article):
    response = http.post(url, data=json.dumps(article), headers={**INGEST_AUTH, "Content-Type": "application/json"})
    assert response.status_code == 202, response.text
    return response.json()["event_id"]


def test_published_stories_are_staged_once_and_a_manual_send_goes_through_the_worker(api_server, celery_worker, http, sink):
    config = make_list()
    section = config["sections"][0]
    reader = addresses(1)[0]
    subscribe_all(config["id"], [reader])
    story = unique_article(section=section)
    event_id = _post(http, f"{api_server}/v1/articles", story)
    wait_for(lambda: any(r["subject"] == event_id for r in receipts("newsletter")), message="stage receipt")
    assert editions.staged(config["id"]) == [story["id"]]
    # Redelivery of the same event stages nothing new.
    celery_worker.app.send_task("syndicate.newsletter.stage_event", args=[event_id])
    wait_for(lambda: sum(r["subject"] == event_id for r in receipts("newsletter")) >= 2, message="second receipt")
    assert editions.staged(config["id"]) == [story["id"]]

    response = http.post(f"{api_server}/v1/newsletters/{config['id']}/send", headers=ADMIN_AUTH)
    assert response.status_code == 202
    eid = response.json()["edition_id"]
    wait_for(lambda: editions.get_edition(eid).get("state") == "sent", message="edition sent")
    assert sink.count(reader) == 1


def test_beat_ticks_open_one_edition_per_slot(celery_worker, sink):
    config = make_list(schedule="30 5 1 1 *", timezone="Asia/Kolkata")  # one slot a year: no boundary mid-test
    reader = addresses(1)[0]
    subscribe_all(config["id"], [reader])
    from newsletter_fixtures import publish

    publish(unique_article(section=config["sections"][0]))
    # The list has existed for years, so its latest slot is due.
    get_redis().hset(key("nl", "list", config["id"]), "created_at", time.time() - 3 * 366 * 86400)
    for _ in range(2):  # beat firing twice
        celery_worker.app.send_task("syndicate.newsletter.tick")
    wait_for(lambda: editions.history(config["id"]) and editions.history(config["id"])[0]["state"] == "sent",
             message="scheduled edition sent")
    time.sleep(0.5)
    celery_worker.app.send_task("syndicate.newsletter.tick")
    time.sleep(0.5)
    assert len(editions.history(config["id"])) == 1
    assert sink.count(reader) == 1


# --- a worker process killed in the middle of a send --------------------------------

SETUP = """
import csv, json, sys, datetime as dt
from syndicate import events
from syndicate.newsletter import lists, service
from syndicate.workers.newsletter import send_edition
doc, readers, article = json.loads(sys.stdin.read())
lists.put_list(doc)
lists.import_rows(doc["id"], [{"email": r} for r in readers])
events.ingest(article)
eid = service.open_manual(doc["id"])
send_edition.apply_async(args=[eid])
print(eid)
"""


def _worker(env, name):
    # Its own session, so SIGKILL reaches the prefork parent and its child alike.
    return subprocess.Popen([sys.executable, "-m", "syndicate.cli.main", "worker", "-Q", "newsletter", "-c", "1",
                             "-n", f"{name}@%h", "--loglevel", "WARNING"], env=env, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_worker_killed_mid_send_is_resumed_and_every_subscriber_gets_it_exactly_once(sink, broker_env):
    # Own key prefix (and on RabbitMQ own vhost): the run's in-process test worker must not take these tasks.
    prefix = f"{get_settings().redis_prefix}kill{uuid.uuid4().hex[:6]}:"
    env = {**os.environ, "SYNDICATE_REDIS_PREFIX": prefix, "SYNDICATE_NEWSLETTER_LEASE_SECONDS": "2",
           "SYNDICATE_SMTP_BATCH_SIZE": "7", "PYTHONPATH": str(ROOT), **broker_env}
    readers = addresses(30, "kill")
    section = f"Kill{uuid.uuid4().hex[:6]}"
    doc = {"id": f"kill-{uuid.uuid4().hex[:8]}", "name": "Kill Test", "schedule": "0 7 * * *", "timezone": "UTC",
           "sections": [section]}
    article = unique_article(section=section, datePublished=dt.datetime.now(dt.timezone.utc).isoformat())
    sink.rcpt_delay, sink.data_delay = 0.05, 0.15  # slow: the kill lands mid-send
    first = second = None
    try:
        first = _worker(env, "nl-first")
        setup = subprocess.run([sys.executable, "-c", SETUP], input=json.dumps([doc, readers, article]), env=env,
                               cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert setup.returncode == 0, setup.stderr
        wait_for(lambda: sink.total(readers) >= 8, timeout=60, message="the first worker to be mid-send")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        at_kill = sink.total(readers)
        assert 0 < at_kill < len(readers)
        sink.rcpt_delay = sink.data_delay = 0.0

        second = _worker(env, "nl-second")
        from syndicate.workers.app import celery_config
        from celery import Celery

        other = Celery("kill-test")
        other.conf.update(celery_config(dataclasses.replace(get_settings(), redis_prefix=prefix,
                                                            broker_url=broker_env.get("SYNDICATE_BROKER_URL"))))

        client = get_redis()

        def statuses() -> dict[str, str]:
            out: dict[str, str] = {}
            for name in client.scan_iter(match=f"{prefix}nl:ed:*:status"):
                out.update(client.hgetall(name))
            return out

        def settled():
            other.send_task("syndicate.newsletter.tick")  # what beat does every 20 s
            final = statuses()
            return len(final) == len(readers) and all(v.split(":", 1)[0] in ("sent", "doubt") for v in final.values())

        wait_for(settled, timeout=60, interval=1.0, message="the second worker to finish the edition")
        final = {address: value.split(":", 1)[0] for address, value in statuses().items()}
        counts = {r: sink.count(r) for r in readers}
        # Never twice. The kill may land between a recipient's "committing" mark and the server's
        # answer: that one recipient is "doubt" (maybe received, never resent); everyone else got it once.
        assert max(counts.values()) == 1, counts
        doubtful = [r for r in readers if final.get(r) == "doubt"]
        assert len(doubtful) <= 1, final
        assert all(counts[r] == 1 for r in readers if r not in doubtful), counts
    finally:
        sink.rcpt_delay = sink.data_delay = 0.0
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
        delete_prefix(get_redis(), prefix)
