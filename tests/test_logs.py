"""Logs an operator runs on: JSON lines with the ids, an access log without secrets, a quiet idle system.

Real ``syndicate worker``, ``beat`` and ``api`` processes write the logs read here.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys

import requests

from conftest import ROOT, free_port, unique_article, wait_for


class Process:
    """A ``syndicate`` command in its own process group; stdout and stderr each in a file."""

    def __init__(self, deployment, name: str, *args: str) -> None:
        self.out, self.err = deployment.tmp / f"{name}.out", deployment.tmp / f"{name}.err"
        with open(self.out, "ab") as out, open(self.err, "ab") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "syndicate.cli.main", *args], env=deployment.env,
                                         cwd=ROOT, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def text(self) -> str:
        """What the process logged (stderr)."""
        return self.err.read_text(errors="replace") if self.err.exists() else ""

    def stdout(self) -> str:
        return self.out.read_text(errors="replace") if self.out.exists() else ""

    def alive(self) -> bool:
        assert self.proc.poll() is None, self.stdout() + self.text()
        return True

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def json_lines(text: str, source: str) -> list[dict]:
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"{source} line {number} is not JSON: {line!r}") from None
        assert isinstance(record, dict), line
        for field in ("time", "level", "logger", "message"):
            assert record.get(field), f"{source} line {number} has no {field}: {line!r}"
        records.append(record)
    return records


def test_json_formatter_carries_the_ids_passed_with_extra(monkeypatch):
    from syndicate import logs

    monkeypatch.setenv("SYNDICATE_LOG_FORMAT", "json")
    record = logging.LogRecord("syndicate.workers", logging.INFO, __file__, 1, "task %s succeeded", ("x",), None)
    record.__dict__.update(event_id="evt_1", outcome="success", duration_ms=1.5, text='<a href="x">"é"</a>')
    line = json.loads(logs.formatter().format(record))
    assert line["level"] == "INFO" and line["logger"] == "syndicate.workers"
    assert line["message"] == "task x succeeded"
    assert (line["event_id"], line["outcome"], line["duration_ms"]) == ("evt_1", "success", 1.5)
    assert line["text"] == '<a href="x">"é"</a>'  # newsroom text is data: escaped by JSON, not interpreted
    assert line["time"].endswith("+00:00")


def test_a_malformed_log_format_is_one_line_and_exit_2(deployment):
    deployment.env["SYNDICATE_LOG_FORMAT"] = "yaml"
    done = deployment.cli("worker", "-Q", "ingest", timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == ["error: SYNDICATE_LOG_FORMAT must be 'text' or 'json', got 'yaml'"]


def test_worker_beat_and_api_write_json_lines_with_the_ids(deployment):
    deployment.env.update(SYNDICATE_LOG_FORMAT="json", SYNDICATE_API_HOST="127.0.0.1")
    port = free_port()
    api = Process(deployment, "api", "api", "--port", str(port))
    beat = Process(deployment, "beat", "beat")
    worker = Process(deployment, "worker", "worker", "-Q", "ingest", "-c", "1", "-n", "json@%h")
    try:
        wait_for(lambda: worker.alive() and " ready." in worker.text(), timeout=60, message="the worker")
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            api.alive()
            try:
                return requests.get(f"{url}/healthz", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(healthy, timeout=30, message="the API to answer")
        article = unique_article()
        auth = {"Authorization": "Bearer test-ingest-token"}
        answer = requests.post(f"{url}/v1/articles", json=article, timeout=10, headers=auth)
        assert answer.status_code == 202, answer.text
        event_id = answer.json()["event_id"]
        # Neither the bearer token nor a token in a query string may reach the log.
        assert requests.get(f"{url}/v1/articles/{article['id']}?token=sekrit-query-token", headers=auth,
                            timeout=10).status_code == 200

        def outcome() -> dict | None:
            for line in worker.text().splitlines():
                if event_id in line and '"outcome"' in line:
                    return json.loads(line)
            return None

        line = wait_for(outcome, timeout=30, message="the fan-out's outcome line")
        wait_for(lambda: "Starting" in beat.text(), timeout=30, message="beat to start")
    finally:
        api.stop()
        beat.stop()
        worker.stop()

    assert line["event_id"] == event_id and line["subject"] == event_id
    assert (line["task"], line["queue"], line["outcome"], line["level"]) == (
        "syndicate.ingest.fanout", "ingest", "success", "INFO")
    assert isinstance(line["duration_ms"], float)

    worker_lines = json_lines(worker.text(), "worker")
    # Celery's own notices for a terminal (the banner is off) are all stdout carries.
    assert all(not line or line.startswith("worker: ") for line in worker.stdout().splitlines()), worker.stdout()
    assert not beat.stdout().strip() and not api.stdout().strip(), beat.stdout() + api.stdout()
    beat_lines = json_lines(beat.text(), "beat")
    api_lines = json_lines(api.text(), "api")
    assert any(" ready." in r["message"] for r in worker_lines)
    assert any(r["logger"] == "celery.beat" for r in beat_lines)
    posted = [r for r in api_lines if r["logger"] == "syndicate.access" and r.get("method") == "POST"]
    assert [(r["path"], r["status"]) for r in posted] == [("/v1/articles", 202)]
    assert isinstance(posted[0]["duration_ms"], float)
    fetched = [r for r in api_lines if r["logger"] == "syndicate.access" and r.get("method") == "GET"
               and r["path"].startswith("/v1/articles/")]
    assert [(r["path"], r["status"], r["article_id"]) for r in fetched] == [
        (f"/v1/articles/{article['id']}", 200, article["id"])]
    assert not [r for r in api_lines if "color_message" in r]
    assert "sekrit-query-token" not in api.text() and "test-ingest-token" not in api.text()
    # The access log is the only per-request line: uvicorn's own stays off.
    assert not [r for r in api_lines if r["logger"] == "uvicorn.access"]


def test_an_idle_worker_and_beat_log_nothing_about_the_drain_at_info(deployment):
    """Beat sends the webhook drain every second; with nothing due, no INFO line says so."""
    queue, unacked = deployment.broker_key("webhooks"), deployment.broker_key("unacked")
    beat = Process(deployment, "beat", "beat")
    try:
        # Ticks pile up in the queue until a worker runs, which makes them countable.
        wait_for(lambda: deployment.redis.llen(queue) >= 4, timeout=30, interval=0.2, message="four drain ticks")
        deployment.start_worker("worker", "webhooks")
        wait_for(lambda: deployment.redis.llen(queue) == 0 and not deployment.redis.hlen(unacked), timeout=30,
                 interval=0.2, message="the worker to run every queued drain")
    finally:
        beat.stop()
        deployment.stop_worker("worker")

    worker_log, beat_log = deployment.log("worker"), beat.stdout() + beat.text()
    assert " ready." in worker_log and "beat: Starting" in beat_log
    for name, text in (("worker", worker_log), ("beat", beat_log)):
        chatty = [line for line in text.splitlines() if " INFO " in line and "drain" in line.lower()]
        assert not chatty, f"{name} logged the idle drain at INFO:\n" + "\n".join(chatty[:5])


def test_outcome_lines_name_each_id_after_the_task_parameter():
    from syndicate.workers.app import app
    from syndicate.workers.base import _ids

    assert _ids(app.tasks["syndicate.webhooks.deliver"], ["dlv_1"], {}) == {"delivery_id": "dlv_1"}
    assert _ids(app.tasks["syndicate.newsletter.send_edition"], ["morning:2026-11-30T07:00"], {}) == {
        "edition_id": "morning:2026-11-30T07:00"}
    assert _ids(app.tasks["syndicate.newsletter.stage_article"], ["morning", "a-1"], {}) == {"article_id": "a-1"}
    assert _ids(app.tasks["syndicate.feeds.apply_event"], [], {"event_id": "evt_2"}) == {"event_id": "evt_2"}


def test_a_periodic_task_is_quiet_only_when_it_found_nothing(caplog):
    from syndicate.workers.app import app

    drain, fanout = app.tasks["syndicate.webhooks.drain"], app.tasks["syndicate.ingest.fanout"]
    with caplog.at_level(logging.DEBUG, logger="syndicate.workers"):
        drain.on_success(0, "task-idle", [], {})
        drain.on_success(3, "task-busy", [], {})
        fanout.on_success(None, "task-event", ["evt_3"], {})
    levels = {r.task_id: r.levelname for r in caplog.records if hasattr(r, "task_id")}
    assert levels == {"task-idle": "DEBUG", "task-busy": "INFO", "task-event": "INFO"}
