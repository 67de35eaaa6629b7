"""`syndicate run` as a new user runs it: no Redis configured, so it starts an embedded one.

This ignores any Redis the machine has, proving the fresh-machine path on every run:
the API, workers and beat come up, the example stories are published, a story
posted with curl-like requests reaches every channel, and Ctrl-C stops everything.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import redis
import requests

from conftest import EXAMPLES, ROOT, free_port, load_seed, wait_for

pytestmark = pytest.mark.e2e


def _clean_env(tmp_path, port):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNDICATE_")}
    env.update({
        "SYNDICATE_DATA_DIR": str(tmp_path / "var"),
        "SYNDICATE_API_PORT": str(port),
        "PYTHONUNBUFFERED": "1",
    })
    return env


class Output:
    """Collects a child's output lines in a thread so the pipe never fills."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)


def test_run_starts_everything_on_embedded_redis_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "syndicate.cli.main", "run", "--examples", str(EXAMPLES), "-c", "1"],
        cwd=ROOT, env=_clean_env(tmp_path, port), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )
    out = Output(proc.stdout)
    try:
        wait_for(lambda: "Press Ctrl-C to stop." in out.text or proc.poll() is not None, timeout=120,
                 message="syndicate run to come up")
        assert proc.poll() is None, out.text
        text = out.text
        url = f"http://127.0.0.1:{port}"
        assert f"{url}/docs" in text
        assert re.search(r"summary: \d+ accepted", text), text
        redis_url = re.search(r"embedded Redis (redis://\S+)", text).group(1)
        assert redis_url != "redis://127.0.0.1:6379/0"
        assert (tmp_path / "var" / "redis" / "appendonlydir").exists() or list((tmp_path / "var" / "redis").glob("*.aof*"))

        tokens = json.loads((tmp_path / "var" / "secrets.json").read_text())
        auth = {"Authorization": f"Bearer {tokens['SYNDICATE_API_TOKEN']}"}
        assert requests.get(f"{url}/healthz", timeout=5).json()["status"] == "ok"
        seed = load_seed()
        # The examples already published the seed story: same content is a duplicate.
        again = requests.post(f"{url}/v1/articles", json=seed, headers=auth, timeout=10)
        assert again.status_code == 200, again.text
        # A newsletter list with one reader; the run's local mailbox receives what is sent.
        admin = {"Authorization": f"Bearer {tokens['SYNDICATE_ADMIN_TOKEN']}"}
        listing = {"id": "morning", "name": "Morning Edition", "schedule": "0 7 * * *",
                   "timezone": "America/New_York", "fromAddress": "Newslooks <news@newslooks.example>"}
        assert requests.put(f"{url}/v1/newsletters/morning", json=listing, headers=admin, timeout=10).status_code == 201
        added = requests.post(f"{url}/v1/newsletters/morning/subscribers", json={"email": "reader@example.com"},
                              headers=admin, timeout=10)
        assert added.status_code == 201, added.text

        story = {**seed, "version": 2, "headline": seed["headline"] + " (updated)"}
        response = requests.post(f"{url}/v1/articles", json=story, headers=auth, timeout=10)
        assert response.status_code == 202, response.text
        event_id = response.json()["event_id"]

        client = redis.Redis.from_url(redis_url, decode_responses=True)

        def seen(queue):
            return any(json.loads(r)["subject"] == event_id for r in client.lrange(f"syndicate:receipts:{queue}", 0, -1))

        for queue in ("ingest", "feeds", "webhooks", "newsletter"):
            wait_for(lambda: seen(queue), timeout=60, message=f"{queue} worker in the embedded run")

        # A feed reader sees the update, in the API and in the static copy.
        def feed_has_update():
            r = requests.get(f"{url}/feeds/all.rss", timeout=5)
            return r.status_code == 200 and "(updated)" in r.text

        wait_for(feed_has_update, timeout=60, message="the update in /feeds/all.rss")
        static = tmp_path / "var" / "feeds" / "all.rss"
        wait_for(lambda: static.exists() and "(updated)" in static.read_text(), timeout=30, message="static feed file")
        # Each feed renders on its own: wait for the section's too.
        section = wait_for(lambda: (r := requests.get(f"{url}/feeds/sections/us.json", timeout=5)).status_code == 200
                           and "(updated)" in r.text and r, timeout=60, message="the update in the US section feed")
        assert section.headers["content-type"].startswith("application/feed+json")

        # The newsletter: a manual edition reaches the reader through SMTP.
        sent = requests.post(f"{url}/v1/newsletters/morning/send", headers=admin, timeout=10)
        assert sent.status_code == 202, sent.text
        mail_dir = tmp_path / "var" / "mail"
        emails = wait_for(lambda: list(mail_dir.glob("*reader@example.com.eml")), timeout=60, message="the edition email")
        message = email.message_from_bytes(emails[0].read_bytes(), policy=email.policy.default)
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert "(updated)" in message.get_body(("plain",)).get_content()
    except BaseException:
        for log in sorted((tmp_path / "var" / "logs").glob("*.log")):
            print(f"==== {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-60:]))
        raise
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's process group
            time.sleep(0.05)
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGINT)  # an impatient second Ctrl-C must not orphan Redis
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    out.thread.join(5)
    for log in sorted((tmp_path / "var" / "logs").glob("*.log")):  # shown by pytest when the test fails
        print(f"==== {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-40:]))
    assert code == 0, out.text[-3000:]
    assert "stopped cleanly" in out.text
    time.sleep(0.2)
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(redis_url, socket_connect_timeout=1).ping()
