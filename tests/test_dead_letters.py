"""A task that fails for good is recorded as a dead letter and can be put back from the CLI."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT, wait_for

from workers.base import dead_letters


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "syndicate.cli.main", *args], cwd=ROOT, env=dict(os.environ),
                          capture_output=True, text=True, timeout=60)


def test_failed_task_is_kept_and_requeued(celery_worker, celery_app):
    marker = "evt_dead_letter_probe"
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
