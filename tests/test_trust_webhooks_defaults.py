"""The documented webhook defaults are the real ones.

The settings are loaded in a child process whose environment holds no
``SYNDICATE_*`` variable (the test session sets several), so what is checked
is exactly what a fresh deployment gets. The tables in README.md and
docs/webhooks.md are parsed row by row and compared with those values, so the
docs and the code cannot drift apart.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT
from syndicate.webhooks import policy
from syndicate.webhooks.outcome import Outcome

_DUMP = """
import dataclasses, json
from syndicate.config import load_settings
s = load_settings()
print(json.dumps({f.name: getattr(s, f.name) for f in dataclasses.fields(s)
                  if f.name.startswith(("webhook_", "delivery_"))}))
"""
# What the channel really runs with: the service context and a worker process's attempt pool.
_IN_USE = """
import json
from syndicate.webhooks import service
from syndicate.workers.webhooks import attempts_pool
ctx, pool = service.context(), attempts_pool()
print(json.dumps({"schedule": ctx.schedule, "connect": ctx.connect_timeout, "read": ctx.read_timeout,
                  "disable_after_s": ctx.disable_after_seconds, "retention_s": ctx.retention_seconds,
                  "allowed": [str(n) for n in ctx.guard.allow], "https_only": ctx.guard.https_only,
                  "threads": pool.pool._max_workers, "per_partner": pool.per_partner}))
"""
DOCUMENTED = {
    "webhook_retry_schedule": [0, 5, 300, 1800, 7200, 18000, 36000, 36000],
    "webhook_connect_timeout": 5,
    "webhook_read_timeout": 15,
    "webhook_rotation_grace_hours": 24,
    "webhook_disable_after_days": 5,
    "delivery_retention_days": 30,
    "webhook_worker_threads": 32,
    "webhook_partner_concurrency": 4,
    "webhook_https_only": False,
    "webhook_allow_networks": [],
}
TABLE_ROW = re.compile(r"^\|\s*`SYNDICATE_((?:WEBHOOK|DELIVERY)_[A-Z_]+)`\s*\|\s*([^|]*?)\s*\|\s*([^|]*?)\s*\|\s*$")


def _clean_run(code: str, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNDICATE_")}
    env.update(extra, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True)
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def defaults() -> dict:
    return _clean_run(_DUMP)


def test_the_channel_runs_with_the_documented_defaults():
    # The broker URL is not a webhook setting; it is needed only to import the Celery app (nothing connects).
    in_use = _clean_run(_IN_USE, SYNDICATE_REDIS_URL="redis://127.0.0.1:9/0")
    assert in_use == {
        "schedule": DOCUMENTED["webhook_retry_schedule"], "connect": 5, "read": 15,
        "disable_after_s": 5 * 86400, "retention_s": 30 * 86400, "allowed": [], "https_only": False,
        "threads": 32, "per_partner": 4,
    }


def test_webhook_defaults_are_the_documented_ones(defaults):
    assert defaults == DOCUMENTED


def test_default_schedule_gives_each_documented_delay_with_twenty_percent_jitter(defaults):
    schedule = tuple(defaults["webhook_retry_schedule"])
    failed = Outcome(status=503, latency_ms=1.0)

    class Edge:  # the extremes of the jitter, instead of a random draw
        def __init__(self, end: int) -> None:
            self.end = end

        def uniform(self, low: float, high: float) -> float:
            return (low, high)[self.end]

    for attempt, delay in enumerate(schedule[1:], start=1):
        for end, factor in ((0, 0.8), (1, 1.2)):
            decision = policy.decide(failed, attempt, schedule, None, 0.0, 0, rng=Edge(end))
            assert decision.action == "retry"
            assert decision.delay == pytest.approx(delay * factor)
    assert policy.decide(failed, len(schedule), schedule, None, 0.0, 0).action == "failed"
    assert len(schedule) == 8  # the first attempt and seven retries


def test_a_partner_failing_for_the_default_period_is_disabled(defaults):
    after = defaults["webhook_disable_after_days"] * 86400
    failed = Outcome(status=500, latency_ms=1.0)
    schedule = tuple(defaults["webhook_retry_schedule"])
    assert policy.decide(failed, 1, schedule, 0.0, after - 1, after).action == "retry"
    assert policy.decide(failed, 1, schedule, 0.0, after, after).action == "disable"


def _documented_value(cell: str):
    if cell.startswith("(none)"):
        return []
    value = cell.strip("`")
    if value in ("true", "false"):
        return value == "true"
    if "," in value:
        return [float(x) for x in value.split(",")]
    return float(value)


@pytest.mark.parametrize("doc", ["README.md", "docs/webhooks.md"])
def test_every_documented_webhook_default_matches_the_code(defaults, doc):
    rows = [TABLE_ROW.match(line) for line in (ROOT / doc).read_text(encoding="utf-8").splitlines()]
    rows = [r for r in rows if r]
    documented = {r.group(1).lower(): _documented_value(r.group(2)) for r in rows}
    # Every webhook setting has a row, and every row names a real setting with its real default.
    assert set(documented) == set(defaults)
    for name, value in documented.items():
        assert value == defaults[name], f"{doc}: SYNDICATE_{name.upper()} is documented as {value!r}"
    [schedule_row] = [r for r in rows if r.group(1) == "WEBHOOK_RETRY_SCHEDULE"]
    assert f"±{policy.JITTER * 100:g}% jitter" in schedule_row.group(3)
