"""Fault tests of the partner webhooks with real processes: worker, beat and the partner's sink.

Each test runs `syndicate worker` and `syndicate beat` as child processes under
a key prefix of its own (inside this run's prefix, so the run's cleanup
removes it), with a short retry schedule, and a partner whose sink is a process
of its own (``tests/webhooks_fixtures.py PORT LOG``) that logs every request
before answering it. The figures (load, lost, duplicated, recovery time) are
printed for docs/RELIABILITY.md: ``pytest -s -m slow tests/test_trust_webhooks_faults.py``.
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis

from conftest import ROOT, free_port, unique_article, wait_for
from syndicate.config import get_settings
from syndicate.embedded import EmbeddedRedis

FIXTURES = Path(__file__).with_name("webhooks_fixtures.py")


class Stack:
    """Worker, beat and sink processes for one test; everything is stopped at the end."""

    def __init__(self, tmp_path: Path, redis_client, schedule: str, redis_url: str | None = None) -> None:
        self.tmp = tmp_path
        self.redis = redis_client
        self.prefix = f"{get_settings().redis_prefix}trust-{uuid.uuid4().hex[:6]}:"
        self.env = dict(os.environ)
        self.env.update({
            "SYNDICATE_REDIS_PREFIX": self.prefix,
            "SYNDICATE_DATA_DIR": str(tmp_path / "data"),
            "SYNDICATE_WEBHOOK_RETRY_SCHEDULE": schedule,
            "SYNDICATE_WEBHOOK_CONNECT_TIMEOUT": "1",
            "SYNDICATE_WEBHOOK_READ_TIMEOUT": "2",
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
        })
        if redis_url:
            self.env["SYNDICATE_REDIS_URL"] = redis_url
        self.procs: list[subprocess.Popen] = []
        self.sink_port = free_port()
        self.sink_log = tmp_path / "sink.jsonl"
        self.sink_log.touch()
        self.sink: subprocess.Popen | None = None
        self.section = f"Fault {uuid.uuid4().hex[:6]}"
        self.partner = f"fault-{uuid.uuid4().hex[:6]}"
        self.published = 0

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "syndicate.cli.main", *args], env=self.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60, check=check)

    def python(self, code: str, *args: str) -> str:
        return subprocess.run([sys.executable, "-c", code, *args], env=self.env, cwd=ROOT, capture_output=True,
                              text=True, timeout=60, check=True).stdout

    def start(self, *args: str) -> None:
        log = open(self.tmp / f"{args[0]}-{len(self.procs)}.log", "w")
        self.procs.append(subprocess.Popen([sys.executable, "-m", "syndicate.cli.main", *args], env=self.env,
                                           cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

    def start_workers(self) -> None:
        self.start("worker", "-Q", "ingest,webhooks", "-c", "1", "-n", f"trust-{uuid.uuid4().hex[:4]}@%h")
        self.start("beat")

    def start_sink(self, delay: float = 0.0) -> None:
        self.sink = subprocess.Popen([sys.executable, str(FIXTURES), str(self.sink_port), str(self.sink_log), str(delay)],
                                     env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL, start_new_session=True)

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.sink_port), timeout=0.5).close()
                return True
            except OSError:
                return False

        wait_for(listening, timeout=20, message="the sink listening")

    def stop_sink(self) -> None:
        assert self.sink is not None
        self.sink.kill()  # the partner goes away at once: refused connections from now on
        self.sink.wait(10)
        self.sink = None

    def add_partner(self) -> None:
        self.cli("partners", "add", self.partner, f"http://127.0.0.1:{self.sink_port}/hook", "--section", self.section)

    def publish(self, count: int) -> None:
        files = []
        for i in range(count):
            path = self.tmp / f"story-{self.published + i}.json"
            path.write_text(json.dumps(unique_article(section=self.section)))
            files.append(str(path))
        self.cli("publish", *files)
        self.published += count

    def statuses(self) -> collections.Counter:
        ids = self.redis.zrange(f"{self.prefix}webhooks:partner-deliveries:{self.partner}", 0, -1)
        with self.redis.pipeline(transaction=False) as pipe:
            for delivery_id in ids:
                pipe.hget(f"{self.prefix}webhooks:delivery:{delivery_id}", "status")
            return collections.Counter(pipe.execute())

    def all_in(self, status: str) -> bool:
        return self.statuses() == collections.Counter({status: self.published})

    def delivery_ids(self) -> set[str]:
        return set(self.redis.zrange(f"{self.prefix}webhooks:partner-deliveries:{self.partner}", 0, -1))

    def received(self) -> list[dict]:
        return [json.loads(line) for line in self.sink_log.read_text().splitlines() if line.strip()]

    def figures(self, name: str, recovery: float) -> tuple[int, int]:
        """(lost, duplicated) as the partner saw them; each duplicate checked to carry the same webhook-id."""
        received = self.received()
        expected = self.delivery_ids()
        per_id = collections.Counter(r["id"] for r in received)
        assert set(per_id) <= expected  # nothing the partner was not meant to get
        for delivery_id in per_id:  # a duplicate is the same message: same webhook-id, same bytes
            assert len({r["sha"] for r in received if r["id"] == delivery_id}) == 1
        lost = len(expected - set(per_id)) + (self.published - len(expected))
        duplicated = sum(n - 1 for n in per_id.values())
        print(f"\nFIGURES {name}: load={self.published} events to 1 partner, requests={len(received)}, "
              f"lost={lost}, duplicated={duplicated} (same webhook-id), recovery={recovery:.1f} s")
        return lost, duplicated

    def close(self) -> None:
        for proc in [*self.procs, *([self.sink] if self.sink else [])]:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


@pytest.fixture()
def stack(tmp_path, redis_client):
    made: list[Stack] = []

    def make(schedule: str, client=None, redis_url: str | None = None) -> Stack:
        made.append(Stack(tmp_path, client or redis_client, schedule, redis_url))
        return made[-1]

    yield make
    for one in made:
        one.close()


@pytest.mark.slow
def test_partner_down_30_seconds_while_events_flow(stack):
    # The schedule spans about 47 s (at least 37 s with the jitter): longer than the outage.
    s = stack("0,1,2,4,8,8,8,8,8,8")
    s.start_sink()
    s.add_partner()
    s.start_workers()
    s.publish(10)
    wait_for(lambda: s.all_in("succeeded"), timeout=60, interval=0.2, message="the first events delivered")
    s.stop_sink()
    down_at = time.monotonic()
    s.publish(10)
    # The outage itself lasts 30 s; more events arrive in the middle of it.
    time.sleep(max(0.0, down_at + 15 - time.monotonic()))
    s.publish(10)
    time.sleep(max(0.0, down_at + 30 - time.monotonic()))
    assert s.statuses()["succeeded"] == 10  # nothing reached a partner that was not there
    s.start_sink()
    back_at = time.monotonic()
    s.publish(10)
    wait_for(lambda: s.all_in("succeeded"), timeout=40, interval=0.2, message="every event delivered")
    lost, _duplicated = s.figures("partner down 30 s", time.monotonic() - back_at)
    assert lost == 0 and len(s.delivery_ids()) == 40


@pytest.mark.slow
def test_partner_down_for_the_whole_schedule_then_recovered(stack):
    s = stack("0,1,1")
    s.add_partner()  # the sink is not running: every attempt is refused
    s.start_workers()
    s.publish(10)
    wait_for(lambda: s.all_in("failed"), timeout=60, interval=0.2, message="every delivery failed for good")
    assert s.received() == []
    s.start_sink()
    started = time.monotonic()
    recovered = s.cli("partners", "recover", s.partner, "--since", "10m")
    assert re.search(r"re-sending 10 ", recovered.stdout)
    wait_for(lambda: s.all_in("succeeded"), timeout=40, interval=0.2, message="every delivery recovered")
    lost, duplicated = s.figures("partner down for the whole schedule, then recover", time.monotonic() - started)
    assert (lost, duplicated) == (0, 0)
    assert sorted(r["id"] for r in s.received()) == sorted(s.delivery_ids())


_TWICE = """
import json, sys, uuid
from syndicate import events
from syndicate.webhooks import deliveries
from syndicate.workers.webhooks import deliver, dispatch_event, drain
partner, articles = sys.argv[1], json.load(open(sys.argv[2]))
for article in articles:
    event_id = events.ingest(article).event_id
    # The broker hands each message over twice: same task, same id, same arguments.
    for task, args in ((dispatch_event, [event_id]), (deliver, [deliveries.delivery_id(event_id, partner)]),
                       (drain, [])):
        task_id = uuid.uuid4().hex
        task.apply_async(args=args, task_id=task_id)
        task.apply_async(args=args, task_id=task_id)
"""


@pytest.mark.slow
def test_every_webhooks_task_delivered_twice_has_each_effect_once(stack):
    s = stack("0,1,1")
    s.start_sink()
    s.add_partner()
    s.start_workers()
    started = time.monotonic()
    count = 30
    articles = s.tmp / "articles.json"
    articles.write_text(json.dumps([unique_article(section=s.section) for _ in range(count)]))
    s.python(_TWICE, s.partner, str(articles))
    s.published = count
    wait_for(lambda: s.all_in("succeeded"), timeout=45, interval=0.2, message="every event delivered")
    lost, duplicated = s.figures("every webhooks task delivered twice", time.monotonic() - started)
    assert (lost, duplicated) == (0, 0)


@pytest.mark.slow
def test_redis_restart_while_attempts_are_in_flight_loses_no_delivery(stack, tmp_path):
    """A Redis of its own (the shared one must not be restarted), stopped for 5 s mid-burst, then back (AOF)."""
    server = EmbeddedRedis(tmp_path / "redis").start()
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        s = stack("0,1,2,4,8,8", client, server.url)
        s.start_sink(delay=0.1)  # 30 events take 3 s or more to answer: the outage lands mid-burst
        s.add_partner()
        s.start_workers()
        s.publish(30)
        wait_for(lambda: s.received(), timeout=60, interval=0.05, message="the first requests")
        server.stop()
        print(f"\nRedis stopped after {len(s.received())} of 30 requests")
        time.sleep(5)  # the outage: workers, beat and the attempt threads see refused connections
        server = EmbeddedRedis(tmp_path / "redis", port=server.port).start()
        back_at = time.monotonic()
        s.publish(10)
        wait_for(lambda: s.all_in("succeeded"), timeout=90, interval=0.2, message="every event delivered")
        lost, _duplicated = s.figures("Redis restarted mid-burst", time.monotonic() - back_at)
        assert lost == 0
        assert all(proc.poll() is None for proc in s.procs)  # no worker or beat exited
    finally:
        server.stop()
