"""/metrics shows what the fault mechanisms are doing: receipts owed, re-dispatches, dead letters.

It runs on a deployment of its own (its own prefix, its own ``syndicate api`` process), so the
figures are exactly this test's, whatever the session's workers are doing meanwhile.
"""

from __future__ import annotations

import subprocess
import sys
import time

import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT, free_port, unique_article, wait_for

CHANNELS = ("feeds", "webhooks", "newsletter")


def _samples(url: str) -> dict[tuple[str, str], float]:
    response = requests.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200
    return {(s.name, s.labels.get("channel", "")): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def test_metrics_count_owed_receipts_redispatches_and_dead_letters_by_channel(deployment):
    port = free_port()
    api = subprocess.Popen([sys.executable, "-m", "syndicate.cli.main", "api", "--port", str(port)], env=deployment.env,
                           cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return requests.get(f"{url}/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                return api.poll() is not None

        # Fanned out with no channel worker running: every channel owes a receipt.
        deployment.start_worker("ingest", "ingest")  # the API starts meanwhile
        wait_for(up, timeout=60, message="the API")
        assert api.poll() is None
        event_id = deployment.publish(unique_article())
        wait_for(lambda: deployment.receipt_count("ingest", event_id), message="fan-out")
        samples = _samples(url)
        assert all(samples[("syndicate_channel_receipts_owed", c)] == 1 for c in CHANNELS), samples
        assert all(samples[("syndicate_reconciler_redispatches_total", c)] == 0 for c in CHANNELS)

        # A queue still holding messages may still hold the event's, so the reconciler leaves it alone.
        owed = deployment.key("events", "owed", "feeds")
        wait_for(lambda: time.time() - deployment.redis.zscore(owed, event_id) > 1, timeout=5, message="grace")
        assert deployment.cli("reconcile").returncode == 0
        samples = _samples(url)
        assert all(samples[("syndicate_reconciler_redispatches_total", c)] == 0 for c in CHANNELS), samples

        # Lost inside the broker (the queues emptied, no receipt): after the grace the reconciler
        # sends each channel's task again and counts it.
        for channel in CHANNELS:
            deployment.redis.delete(deployment.broker_key(channel))
        wait_for(lambda: time.time() - deployment.redis.zscore(owed, event_id) > 1, timeout=5, message="grace")
        assert deployment.cli("reconcile").returncode == 0
        samples = _samples(url)
        assert all(samples[("syndicate_reconciler_redispatches_total", c)] == 1 for c in CHANNELS), samples

        # Re-dispatching restarts the grace; it does not settle anything (only a receipt does).
        assert all(samples[("syndicate_channel_receipts_owed", c)] == 1 for c in CHANNELS), samples

        # Dead letters by channel, as syndicate.deadletters counts them.
        deployment.redis.hincrby(deployment.key("dead-letters", "total"), "webhooks", 2)
        samples = _samples(url)
        assert samples[("syndicate_dead_letters_recorded_total", "webhooks")] == 2
        assert samples[("syndicate_dead_letters_recorded_total", "feeds")] == 0
    finally:
        api.terminate()
        api.wait(15)
