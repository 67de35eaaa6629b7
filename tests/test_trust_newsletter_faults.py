"""Newsletter faults with real processes: the SMTP server down mid-edition, beat down across a slot.

Each test prints one line of figures (load, injection, lost, duplicated,
recovery time) for docs/RELIABILITY.md; run with ``-s`` to see them:

    .venv/bin/python -m pytest -s tests/test_trust_newsletter_faults.py            # fast ones
    .venv/bin/python -m pytest -s -m slow tests/test_trust_newsletter_faults.py    # the real beat process too
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from conftest import ROOT, free_port, unique_article, wait_for
from newsletter_fixtures import SinkHandler, addresses, make_list, publish, subscribe_all

from syndicate.config import get_settings, reset_settings
from syndicate.newsletter import cron, editions, lists, service
from syndicate.store import delete_prefix, get_redis, key

UTC = dt.timezone.utc


def figures(name: str, **values: object) -> None:
    print(f"\nFIGURES {name}: " + ", ".join(f"{k}={v}" for k, v in values.items()))


# --- the SMTP server down in the middle of an edition --------------------------------

class FailingSink(SinkHandler):
    """A sink that, once ``down_after`` messages are stored, leaves every new recipient hanging.

    The hang comes at RCPT, before DATA: the stop that follows can never land
    between a message's final dot and its reply, so what each reader should get
    is known (the fault is the outage, not an ambiguous commit).
    """

    def __init__(self, down_after: int) -> None:
        super().__init__()
        self.down_after = down_after

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            down = sum(self.counts.values()) >= self.down_after
        if down:
            await asyncio.sleep(3600)  # cancelled when the server stops
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


def _controller(handler, port):
    from aiosmtpd.controller import Controller

    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    return controller


def test_smtp_server_down_mid_edition_then_back_each_subscriber_exactly_once(monkeypatch, celery_worker):
    load, down_after = 60, 20
    port = free_port()
    # A short socket timeout, so the copy hanging at RCPT when the server dies fails fast.
    monkeypatch.setenv("SYNDICATE_SMTP_URL", f"smtp://127.0.0.1:{port}?timeout=2")
    monkeypatch.setenv("SYNDICATE_SMTP_BATCH_SIZE", "10")
    reset_settings()
    handler = FailingSink(down_after)
    controller = _controller(handler, port)
    try:
        config = make_list()
        publish(unique_article(section=config["sections"][0]))
        readers = addresses(load, "smtpdown")
        subscribe_all(config["id"], readers)
        eid = service.open_manual(config["id"])
        celery_worker.app.send_task("syndicate.newsletter.send_edition", args=[eid])

        wait_for(lambda: handler.total(readers) >= down_after, message="the first copies")
        controller.stop()  # the server dies with a copy hanging mid-transaction
        # The run pauses, without charging the readers it could not reach: the edition waits.
        wait_for(lambda: editions.lease_holder(eid) is None and editions.get_edition(eid)["state"] == "sending",
                 timeout=30, message="the run to pause")
        assert not editions.recipient_statuses(eid, "failed")
        stored_while_down = handler.total(readers)

        restarted = time.monotonic()
        handler.down_after = 10**9
        controller = _controller(handler, port)  # the same server back on the same port

        def finished():
            celery_worker.app.send_task("syndicate.newsletter.tick")  # what beat does every 20 s
            return editions.get_edition(eid)["state"] == "sent"

        wait_for(finished, timeout=60, interval=0.5, message="the edition to finish after the restart")
        recovery = time.monotonic() - restarted
        counts = {r: handler.count(r) for r in readers}
        lost = sum(1 for c in counts.values() if c == 0)
        duplicated = sum(c - 1 for c in counts.values() if c > 1)
        figures("smtp-down-mid-edition", load=f"{load} subscribers", injection=f"SMTP stopped after {stored_while_down}",
                lost=lost, duplicated=duplicated, recovery_s=f"{recovery:.1f}")
        assert counts == {r: 1 for r in readers}
        tally = editions.tally(eid)
        assert tally["sent"] == load and tally["failed"] == tally["doubt"] == 0
    finally:
        controller.stop()
        monkeypatch.undo()
        reset_settings()


# --- beat down across an edition slot -------------------------------------------------

def _minute_list(base: dt.datetime) -> dict:
    config = make_list(schedule="* * * * *", timezone="UTC")
    # Created just before the (future) slots this test drives: ticks of the real clock that a
    # worker may still run meanwhile see only slots before its creation, and open nothing.
    get_redis().hset(key("nl", "list", config["id"]), "created_at", base.timestamp() - 30)
    return config


def _mine(config: dict, opened: list[str]) -> list[str]:
    return sorted(e for e in opened if e.startswith(config["id"] + "."))


def test_beat_down_across_slots_opens_each_missed_slot_once_when_it_comes_back(sink_default):
    base = cron.previous_fire("* * * * *", "UTC", dt.datetime.now(UTC)) + dt.timedelta(days=1)
    config = _minute_list(base)
    reader = addresses(1, "beat")[0]
    subscribe_all(config["id"], [reader])
    # Beat runs at slot 0: its edition opens (twice-fired ticks and two beats open it once).
    publish(unique_article(section=config["sections"][0]))
    at_0 = base + dt.timedelta(seconds=5)
    first = _mine(config, service.open_due(at_0) + service.open_due(at_0) + service.open_due(at_0 + dt.timedelta(seconds=20)))
    assert first == [service.scheduled_edition_id(config["id"], base)]
    # Beat is killed; a story comes in; slots 1, 2 and 3 pass; beat comes back 10 s after slot 3.
    late = unique_article(section=config["sections"][0], headline=f"While beat was down {uuid.uuid4().hex[:6]}")
    publish(late)
    back = base + dt.timedelta(minutes=3, seconds=10)
    opened = _mine(config, service.open_due(back))
    again = _mine(config, service.open_due(back) + service.open_due(back + dt.timedelta(seconds=20)))
    expected = [service.scheduled_edition_id(config["id"], base + dt.timedelta(minutes=m)) for m in (1, 2, 3)]
    assert opened == expected and again == []  # every missed slot, once
    for eid in first + opened:
        service.run_edition(eid)
    states = [editions.get_edition(e)["state"] for e in expected]
    # The story staged while beat was down goes out in the first missed slot; the others had nothing new.
    assert states == ["sent", "skipped", "skipped"]
    mails = sink_default.received(reader)
    assert len(mails) == 2 and late["headline"] in mails[1].get_body(("plain",)).get_content()
    history = editions.history(config["id"])
    figures("beat-down-3-slots (driven)", load="1 list, per-minute cron", injection="beat down for slots 1-3",
            lost=0, duplicated=len(history) - 4, missed_slots=4 - len(history), recovery="first tick after restart")


@pytest.fixture()
def sink_default(redis_client):
    from newsletter_fixtures import smtp_sink

    return smtp_sink()


def _beat(env: dict) -> subprocess.Popen:
    # Its own session, so SIGKILL reaches beat and nothing else.
    return subprocess.Popen([sys.executable, "-m", "syndicate.cli.main", "beat", "--loglevel", "WARNING"], env=env,
                            cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _worker(env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "syndicate.cli.main", "worker", "-Q", "newsletter", "-c", "1",
                             "-n", f"beatfault-{uuid.uuid4().hex[:6]}@%h", "--loglevel", "WARNING"], env=env, cwd=ROOT,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _seconds_to_next_minute() -> float:
    now = time.time()
    return 60 - now % 60


@pytest.mark.slow
def test_real_beat_killed_before_a_slot_and_restarted_after_it(sink_default, tmp_path, monkeypatch):
    """A real ``syndicate beat`` is SIGKILLed 10 s before a slot and restarted after the next one."""
    prefix = f"{get_settings().redis_prefix}beat{uuid.uuid4().hex[:6]}:"
    env = {**os.environ, "SYNDICATE_REDIS_PREFIX": prefix, "SYNDICATE_DATA_DIR": str(tmp_path),
           "PYTHONPATH": str(ROOT)}
    section = f"Beat{uuid.uuid4().hex[:6]}"
    doc = {"id": f"beat-{uuid.uuid4().hex[:8]}", "name": "Beat Test", "schedule": "* * * * *", "timezone": "UTC",
           "sections": [section]}
    readers = addresses(5, "realbeat")
    beat = worker = None
    monkeypatch.setenv("SYNDICATE_REDIS_PREFIX", prefix)  # this process writes the list under the same prefix
    reset_settings()
    try:
        lists.put_list(doc)
        for reader in readers:
            lists.add_subscriber(doc["id"], reader)
        worker, beat = _worker(env), _beat(env)
        # The first slot after creation: beat opens it and the worker sends it (the first edition of
        # a new list also carries the last 24 hours, so publish one story for it).
        publish(unique_article(section=section, datePublished=dt.datetime.now(UTC).isoformat()))
        wait_for(lambda: any(h["state"] == "sent" for h in editions.history(doc["id"])), timeout=150, interval=1,
                 message="the first scheduled edition")
        # Kill beat 10 s before the next slot; publish during the outage; restart 15 s after the slot after it.
        if _seconds_to_next_minute() < 12:
            time.sleep(_seconds_to_next_minute() + 1)  # not a race: only aligns the kill inside a minute
        time.sleep(max(_seconds_to_next_minute() - 10, 0))
        _stop(beat, signal.SIGKILL)
        killed_at = time.time()
        missed_first = dt.datetime.fromtimestamp(killed_at - killed_at % 60 + 60, UTC)
        late = unique_article(section=section, headline=f"Published while beat was down {section}",
                              datePublished=dt.datetime.now(UTC).isoformat())
        publish(late)
        wait_for(lambda: time.time() >= missed_first.timestamp() + 75, timeout=120, interval=1, message="two slots to pass")
        assert not any(h["id"] == service.scheduled_edition_id(doc["id"], missed_first) for h in editions.history(doc["id"]))
        beat = _beat(env)
        restarted = time.monotonic()
        missed = [service.scheduled_edition_id(doc["id"], missed_first + dt.timedelta(minutes=m)) for m in (0, 1)]

        def caught_up():
            ids = {h["id"]: h["state"] for h in editions.history(doc["id"])}
            return all(ids.get(e) in ("sent", "skipped") for e in missed)

        wait_for(caught_up, timeout=90, interval=1, message="the missed slots' editions")
        recovery = time.monotonic() - restarted
        history = editions.history(doc["id"], 100)
        slots = [h["slot"] for h in history]
        copies = {r: [m.get_body(("plain",)).get_content() for m in sink_default.received(r)] for r in readers}
        with_late = {r: sum(late["headline"] in body for body in bodies) for r, bodies in copies.items()}
        figures("beat-killed-around-a-slot (real beat)", load=f"1 list, per-minute cron, {len(readers)} subscribers",
                injection="SIGKILL beat 10 s before a slot, restart 75 s after it",
                lost=sum(1 for n in with_late.values() if n == 0), duplicated=sum(n - 1 for n in with_late.values() if n > 1),
                missed_slots=sum(1 for e in missed if e not in {h["id"] for h in history}),
                double_editions=len(slots) - len(set(slots)), recovery_s=f"{recovery:.1f}")
        assert len(slots) == len(set(slots))  # no slot opened twice
        assert with_late == {r: 1 for r in readers}  # the story of the outage reached everyone once
    finally:
        _stop(beat)
        _stop(worker)
        monkeypatch.undo()
        reset_settings()
        delete_prefix(get_redis(), prefix)
