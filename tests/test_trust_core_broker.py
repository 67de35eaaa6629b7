"""Workers survive broker restarts, and a killed worker's work comes back (issue 8, classes 9 and 10).

Everything here is a real process: a redis-server this test starts on its own port with AOF,
``syndicate worker`` processes (prefork), and a producer that commits and enqueues stories.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, Deployment, unique_article, wait_for

from syndicate.embedded import EmbeddedRedis

CHANNELS = ("feeds", "webhooks", "newsletter")

# Commits and enqueues stories until it is killed, riding out the broker's restarts; writes the
# id of every committed event (whether or not its enqueue got through: the reconciler's job).
PRODUCER = """
import json, sys, time, uuid
from pathlib import Path
from syndicate import events
from syndicate.workers.ingest import enqueue_fanout
seed, out = json.loads(Path(sys.argv[1]).read_text()), open(sys.argv[2], "a", buffering=1)
while True:
    try:
        result = events.ingest(dict(seed, id="p-" + uuid.uuid4().hex[:12]))
    except Exception:
        time.sleep(0.1)
        continue
    out.write(result.event_id + "\\n")
    try:
        enqueue_fanout(result.event_id)
    except Exception:
        pass
    time.sleep(0.03)
"""


@pytest.fixture()
def own_redis(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis").start()  # AOF on, appendfsync everysec, its own port
    try:
        yield server
    finally:
        server.stop()


def restart(server: EmbeddedRedis, sig: signal.Signals) -> None:
    server.process.send_signal(sig)
    server.process.wait(15)
    server.process = None
    server.start()  # same port and data directory: it loads its AOF


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def settled(dep: Deployment, event_ids: list[str]) -> bool:
    """No event still waits for fan-out and no channel still owes a receipt for one."""
    with dep.redis.pipeline(transaction=False) as pipe:
        for event_id in event_ids:
            pipe.zscore(dep.key("events:pending"), event_id)
            for channel in CHANNELS:
                pipe.zscore(dep.key("events", "owed", channel), event_id)
        return all(score is None for score in pipe.execute())


@pytest.mark.slow
def test_a_worker_rides_out_five_redis_restarts_and_nothing_committed_is_lost(tmp_path, own_redis):
    dep = Deployment(tmp_path, redis_url=own_redis.url, visibility_timeout=10)
    producer = None
    try:
        worker = dep.start_worker("main", "ingest,feeds,webhooks,newsletter", concurrency=2)
        seed = tmp_path / "seed.json"
        seed.write_text(json.dumps(unique_article()))
        committed = tmp_path / "committed.txt"
        producer = subprocess.Popen([sys.executable, "-c", PRODUCER, str(seed), str(committed)], env=dep.env,
                                    cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for round_ in range(5):
            wait_for(lambda: committed.exists() and len(committed.read_text().split()) > 20 * (round_ + 1),
                     message="stories flowing")
            restart(own_redis, signal.SIGKILL if round_ % 2 else signal.SIGTERM)
            assert worker.poll() is None, dep.log("main")[-4000:]
        wait_for(lambda: len(committed.read_text().split()) > 20 * 6, message="stories flowing after the restarts")
        producer.kill()
        producer.wait()
        event_ids = committed.read_text().split()

        # The reconciler (beat's job, run here by hand) recovers enqueues and channel messages
        # the restarts cut off; the worker that lived through all of them does the work.
        deadline = time.monotonic() + 60
        while not settled(dep, event_ids):
            assert worker.poll() is None, "the worker exited:\n" + dep.log("main")[-4000:]
            assert time.monotonic() < deadline, "events still pending or owed after 60 s"
            assert dep.cli("reconcile").returncode == 0
            time.sleep(2)
        assert worker.poll() is None
        log = dep.log("main")
        assert "Unrecoverable error" not in log, log[-4000:]
        for channel in CHANNELS:
            seen = {r["subject"] for r in dep.receipts(channel)}
            assert not set(event_ids) - seen, (channel, len(set(event_ids) - seen))
    finally:
        if producer and producer.poll() is None:
            producer.kill()
        dep.close()


def _kill_parent_mid_task_and_time_recovery(tmp_path, visibility: int | None, within: float) -> float:
    settings = {"visibility_timeout": visibility} if visibility else {}
    dep = Deployment(tmp_path, **settings)
    try:
        first = dep.start_worker("first", "ingest")
        # Freeze the pool children, so the task the parent hands them stays mid-run.
        for child in children(first.pid):
            os.kill(child, signal.SIGSTOP)
        event_id = dep.publish(unique_article())
        wait_for(lambda: dep.redis.hlen(dep.broker_key("unacked")) >= 1, message="the task held, unacked, by the worker")
        os.killpg(first.pid, signal.SIGKILL)  # kill -9 the parent (and its frozen children)
        killed = time.monotonic()
        first.wait()
        dep.workers.pop("first")
        assert dep.receipt_count("ingest", event_id) == 0

        dep.start_worker("second", "ingest")
        wait_for(lambda: dep.receipt_count("ingest", event_id), timeout=within, interval=0.2,
                 message="the second worker to redo the task")
        took = time.monotonic() - killed
        assert dep.receipt_count("ingest", event_id) == 1
        print(f"redone {took:.1f}s after kill -9 of the worker parent (visibility timeout {visibility or 'default'})")
        return took
    finally:
        dep.close()


def test_work_held_by_a_killed_worker_parent_is_redone_after_the_visibility_timeout(tmp_path):
    # A short visibility timeout keeps this fast; the next test holds the default to two minutes.
    _kill_parent_mid_task_and_time_recovery(tmp_path, visibility=10, within=60)


@pytest.mark.slow
def test_with_the_default_settings_work_of_a_killed_worker_parent_is_redone_within_two_minutes(tmp_path):
    _kill_parent_mid_task_and_time_recovery(tmp_path, visibility=None, within=120)
