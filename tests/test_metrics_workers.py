"""Worker metrics after a real run: tasks, deliveries per partner, emails, feed renders, WebSub pings.

One deployment of its own (its own prefix), driven through real processes: the API, a
``syndicate worker`` for the webhooks queue serving its own /metrics port (its own
multiprocess directory), and one for the other queues sharing a directory with the API,
as ``syndicate run`` sets them up, so the API's /metrics carries that worker's series.
Partners are real HTTP sinks, the hub a real HTTP sink, the mail a real SMTP server.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections import defaultdict

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import ADMIN_AUTH, INGEST_AUTH, ROOT, free_port, unique_article, wait_for
from newsletter_fixtures import addresses, smtp_sink
from webhooks_fixtures import sinks  # noqa: F401 - fixture

PARTNERS = 4
LABELLED = 2  # SYNDICATE_METRICS_PARTNER_LABELS: the rest count as "other"


def scrape(url: str) -> str:
    response = requests.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    return response.text


def scrape_until(url: str, check, message: str, timeout: float = 30) -> str:
    """Scrape until ``check(text)`` holds (a task's counters land just after its side effects)."""
    last: list[str] = []

    def ready() -> bool:
        last[:] = [scrape(url)]
        return check(last[0])

    wait_for(ready, timeout=timeout, interval=0.2, message=message)
    return last[0]


def samples(text: str) -> dict[str, dict[tuple, float]]:
    """``{sample name: {sorted label items: value}}``."""
    found: dict[str, dict[tuple, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[s.name][tuple(sorted(s.labels.items()))] = s.value
    return found


def total(text: str, name: str, **labels: str) -> float:
    return sum(v for key, v in samples(text).get(name, {}).items() if set(labels.items()) <= set(key))


def label_values(text: str, name: str, label: str) -> set[str]:
    return {dict(key)[label] for key in samples(text).get(name, {}) if label in dict(key)}


def promtool_check(text: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        return
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def start_api(env: dict[str, str]) -> tuple[str, subprocess.Popen]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "syndicate.cli.main", "api", "--port", str(port)],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return f"http://127.0.0.1:{port}", proc


def api_up(url: str, proc: subprocess.Popen) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return proc.poll() is not None


def test_workers_report_tasks_deliveries_emails_renders_and_pings(deployment, sinks, tmp_path):  # noqa: F811
    mail = smtp_sink()
    partner_sink, hub = sinks(), sinks()
    webhooks_port = free_port()
    shared = tmp_path / "metrics"
    shared.mkdir()
    deployment.env.update(SYNDICATE_METRICS_PARTNER_LABELS=str(LABELLED), SYNDICATE_WEBSUB_HUB=hub.url,
                          SYNDICATE_WEBHOOK_RETRY_SCHEDULE="0,1")
    deployment.env["PROMETHEUS_MULTIPROC_DIR"] = str(shared)
    url, api_proc = start_api(deployment.env)
    try:
        deployment.start_worker("main", "ingest,feeds,newsletter", concurrency=2)
        # The webhooks worker has no shared directory, only its port: it makes a directory of its own.
        own = {k: v for k, v in deployment.env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        deployment.env, shared_env = {**own, "SYNDICATE_WORKER_METRICS_PORT": str(webhooks_port)}, deployment.env
        deployment.start_worker("webhooks", "webhooks", concurrency=2)
        deployment.env = shared_env
        wait_for(lambda: api_up(url, api_proc), timeout=60, message="the API")
        assert api_proc.poll() is None

        http = requests.Session()
        names = [f"m{i}-{uuid.uuid4().hex[:6]}" for i in range(PARTNERS)]
        for name in names:  # one after another: the registry orders partners by when they were added
            r = http.post(f"{url}/v1/partners", json={"name": name, "url": partner_sink.url}, headers=ADMIN_AUTH)
            assert r.status_code == 201, r.text
        section = f"Sec{uuid.uuid4().hex[:8]}"
        list_id = f"nl-{uuid.uuid4().hex[:8]}"
        r = http.put(f"{url}/v1/newsletters/{list_id}", headers=ADMIN_AUTH, json={
            "id": list_id, "name": "Metrics", "schedule": "0 7 * * *", "timezone": "UTC", "sections": [section]})
        assert r.status_code in (200, 201), r.text
        readers = addresses(3, "metrics")
        mail.refuse.add(readers[0])
        for address in readers:
            assert http.post(f"{url}/v1/newsletters/{list_id}/subscribers", json={"email": address},
                             headers=ADMIN_AUTH).status_code in (200, 201)

        r = http.post(f"{url}/v1/articles", json=unique_article(section), headers=INGEST_AUTH)
        assert r.status_code == 202, r.text
        event_id = r.json()["event_id"]
        wait_for(lambda: partner_sink.count() == PARTNERS, timeout=60, message="a delivery to every partner")
        wait_for(lambda: deployment.receipt_count("newsletter", event_id), timeout=60, message="the story staged")
        assert http.post(f"{url}/v1/newsletters/{list_id}/send", headers=ADMIN_AUTH).status_code == 202
        wait_for(lambda: mail.total(readers[1:]) == 2, timeout=60, message="the edition sent")

        # The webhooks worker's own endpoint: every delivery and attempt, partners past the label
        # budget folded into "other".
        worker_url = f"http://127.0.0.1:{webhooks_port}"
        text = scrape_until(worker_url, lambda t: total(
            t, "syndicate_webhook_deliveries_total", outcome="delivered") == PARTNERS, "every delivery counted")
        assert label_values(text, "syndicate_webhook_deliveries_total", "partner") == {*names[:LABELLED], "other"}
        assert label_values(text, "syndicate_webhook_attempts_total", "partner") == {*names[:LABELLED], "other"}
        for name in names[:LABELLED]:
            assert total(text, "syndicate_webhook_deliveries_total", partner=name, outcome="delivered") == 1
        assert total(text, "syndicate_webhook_deliveries_total", partner="other") == PARTNERS - LABELLED
        assert total(text, "syndicate_webhook_attempts_total", result="succeeded") == PARTNERS
        assert total(text, "syndicate_tasks_total", queue="webhooks", outcome="success") >= 1
        assert total(text, "syndicate_task_duration_seconds_count", queue="webhooks") >= 1
        assert total(text, "syndicate_task_duration_seconds_count", queue="feeds") == 0  # not this host's queue
        promtool_check(text)

        # The API's /metrics, sharing its directory with the main worker: that worker's series too.
        text = scrape_until(url, lambda t: total(t, "syndicate_emails_total", outcome="sent") == 2
                            and total(t, "syndicate_websub_pings_total", outcome="ok") == hub.count() >= 1,
                            "the emails and pings counted")
        assert total(text, "syndicate_emails_total", outcome="refused") == 1
        assert total(text, "syndicate_emails_total", outcome="doubt") == 0
        assert hub.count() >= 1
        for queue in ("ingest", "feeds", "newsletter"):
            assert total(text, "syndicate_task_duration_seconds_count", queue=queue) >= 1, queue
            assert total(text, "syndicate_tasks_total", queue=queue, outcome="success") >= 1, queue
        assert total(text, "syndicate_task_duration_seconds_count", queue="webhooks") == 0
        renders = total(text, "syndicate_feed_renders_total")
        assert total(text, "syndicate_feed_renders_total", feed="all") >= 1
        assert total(text, "syndicate_feed_renders_total", feed="section") >= 1
        assert total(text, "syndicate_feed_render_duration_seconds_count") == renders
        assert total(text, "syndicate_ingest_total", outcome="event") == 1
        # Written to the shared directory and read back once, beside what the API reads from Redis.
        assert [line for line in text.splitlines() if line.startswith("syndicate_ingest_total{")] == [
            'syndicate_ingest_total{outcome="event"} 1.0']
        assert label_values(text, "syndicate_queue_depth", "queue") == {"ingest", "feeds", "webhooks", "newsletter"}
        promtool_check(text)
    finally:
        api_proc.terminate()
        api_proc.wait(15)


def test_promtool_accepts_the_api_metrics_page(api_server):
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed: apt-get install prometheus")
    promtool_check(scrape(api_server))


def test_syndicate_run_serves_its_workers_metrics_on_the_api(tmp_path):
    import os
    import signal

    port = free_port()
    env = {**os.environ, "SYNDICATE_REDIS_PREFIX": f"{os.environ['SYNDICATE_REDIS_PREFIX']}run{uuid.uuid4().hex[:6]}:",
           "SYNDICATE_DATA_DIR": str(tmp_path / "var"), "SYNDICATE_API_PORT": str(port), "PYTHONUNBUFFERED": "1"}
    stale = tmp_path / "var" / "metrics" / "counter_1.db"  # a previous run's file: emptied at start
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"not a metrics file")
    proc = subprocess.Popen([sys.executable, "-m", "syndicate.cli.main", "run", "-c", "1"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: api_up(url, proc) and (tmp_path / "var" / "instance.json").exists(), timeout=120,
                 message="syndicate run to come up")
        assert proc.poll() is None
        r = requests.post(f"{url}/v1/articles", json=unique_article(), headers=INGEST_AUTH, timeout=10)
        assert r.status_code == 202, r.text
        # Both worker processes of the run (main and webhooks) report through the API.
        text = scrape_until(url, lambda t: all(
            total(t, "syndicate_tasks_total", task=task, outcome="success") >= 1
            for task in ("syndicate.ingest.fanout", "syndicate.feeds.apply_event",
                         "syndicate.webhooks.dispatch_event", "syndicate.newsletter.stage_event")),
            "every channel's task counted", timeout=90)
        assert total(text, "syndicate_feed_renders_total", feed="all") >= 1
        assert not stale.exists()
        promtool_check(text)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
