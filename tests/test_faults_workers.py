"""Fault suite: worker processes killed with SIGKILL in the middle of a burst of articles.

Every article the API accepted (2xx) must reach the main feed once, each of two
partners (a repeat only with the same webhook-id: a retry the partner can
recognise), and the newsletter list's pending edition. See faults_harness.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

from faults_harness import Burst, Deployment, command, make_articles, row, wait_until

LOAD = 500
KILL_AT = 0.3  # the fraction of the burst accepted when the kill lands


def _assert_nothing_lost_or_doubled(tally, burst) -> None:
    assert not burst.server_errors, f"the API answered 5xx other than 503: {burst.server_errors[:3]}"
    assert not burst.unaccepted, f"{len(burst.unaccepted)} articles never got a 2xx: {burst.statuses}"
    assert not tally.lost_feed, f"{len(tally.lost_feed)} accepted articles missing from the main feed"
    for partner, lost in tally.lost_partner.items():
        assert not lost, f"{len(lost)} accepted articles never reached partner {partner}"
    assert not tally.lost_staged, f"{len(tally.lost_staged)} accepted articles not staged for the edition"
    assert tally.dup_feed == 0, f"{tally.dup_feed} repeated items in the main feed"
    for partner, most in tally.ids_per_event_max.items():
        # A repeat is allowed only as a retry of the same delivery (same webhook-id), which partners dedupe.
        assert most <= 1, f"partner {partner} got one event under {most} different webhook-ids"


def _wait_busy(burst: Burst) -> None:
    wait_until(lambda: burst.accepted_count() >= LOAD * KILL_AT, 120, f"{KILL_AT:.0%} of the burst accepted",
               interval=0.02)


def _lost_in_flight(logs: str) -> str:
    # Celery logs WorkerLostError when a pool process dies holding a task: the kill hit work in flight.
    return "tasks in flight lost" if "WorkerLostError" in logs else "no task in flight"


@pytest.mark.slow
def test_worker_child_killed_mid_burst_loses_and_doubles_nothing():
    with Deployment() as deployment:
        deployment.start()
        burst = Burst(deployment.api_url, make_articles(LOAD, uuid.uuid4().hex[:6]))
        _wait_busy(burst)
        # Every pool process of both workers, while they hold work: the kill lands on tasks in flight.
        wait_until(lambda: deployment.held_events(), 30, "the workers holding unacknowledged events",
                   interval=0.01)
        for group in ("main", "webhooks"):
            worker = deployment.procs[f"worker-{group}"]
            for child in wait_until(worker.children, 30, f"the {group} worker's pool processes"):
                os.kill(child, signal.SIGKILL)
        killed_at = time.monotonic()
        burst.join()
        tally, _ = deployment.wait_delivered(burst.accepted, timeout=300)
        recovery = time.monotonic() - killed_at
        hit = _lost_in_flight(deployment.procs["worker-main"].log_text()
                              + deployment.procs["worker-webhooks"].log_text())
        row("worker child SIGKILL", f"{LOAD} articles, 4 threads, 2 partners, 1 list",
            f"kill -9 every pool process of both workers at {KILL_AT:.0%} ({hit})",
            tally.lost_text(), tally.dup_text(),
            f"{recovery:.0f} s to all delivered after the kill; {deployment.redispatched()}",
            command("test_faults_workers.py::test_worker_child_killed_mid_burst_loses_and_doubles_nothing"))
        _assert_nothing_lost_or_doubled(tally, burst)
        assert not deployment.worker_exits(), "a worker parent exited after losing a pool process"


@pytest.mark.slow
@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_worker_parent_killed_mid_burst_recovers_within_two_minutes(pool):
    """The process that took the messages dies; with threads (as `syndicate run` starts workers) it is the worker."""
    with Deployment(pool=pool) as deployment:
        deployment.start()
        burst = Burst(deployment.api_url, make_articles(LOAD, uuid.uuid4().hex[:6]))
        _wait_busy(burst)
        # Kill while the workers hold work (messages reserved, unacknowledged), so the kill takes some.
        wait_until(lambda: len(deployment.held_events()) >= 2, 60, "the workers holding two unacknowledged events",
                   interval=0.01)
        for group in ("main", "webhooks"):
            os.kill(deployment.procs[f"worker-{group}"].pid, signal.SIGKILL)
        killed_at = time.monotonic()
        # Acknowledgements come from the parents, so what is unacknowledged now is what they held.
        held = deployment.held()
        held_articles = {a for a in (deployment.article_of(e) for _t, e in held.values() if e) if a}
        for group in ("main", "webhooks"):
            deployment.start_worker(group)  # a supervisor (systemd, docker, `syndicate run`) starts a new one
        # Redone: each held message was put back, run and acknowledged, and its stories reached every channel.
        wait_until(lambda: not deployment.outstanding(set(held)) and not deployment.missing(held_articles), 300,
                   f"the {len(held)} messages held by the killed workers to be redone", interval=0.5)
        held_recovery = time.monotonic() - killed_at
        burst.join()
        tally, _ = deployment.wait_delivered(burst.accepted, timeout=300)
        recovery = time.monotonic() - killed_at
        tasks = ", ".join(sorted({t.rsplit(".", 1)[-1] for t, _e in held.values()}))
        row(f"worker parent SIGKILL ({pool} pool)", f"{LOAD} articles, 4 threads, 2 partners, 1 list",
            f"kill -9 both worker parents at {KILL_AT:.0%} holding {len(held)} messages ({tasks}); new workers started",
            tally.lost_text(), tally.dup_text(),
            f"held work redone {held_recovery:.0f} s after the kill; all delivered {recovery:.0f} s; "
            f"{deployment.redispatched()}",
            command(f"test_faults_workers.py::test_worker_parent_killed_mid_burst_recovers_within_two_minutes[{pool}]"))
        _assert_nothing_lost_or_doubled(tally, burst)
        assert held_recovery <= 120, f"work held by the killed parents took {held_recovery:.0f}s to be redone"
