"""``syndicate run`` restarts a child that dies instead of stopping everything (issue 8, class 9):
a worker killed outright, and the embedded Redis killed outright (it comes back from its AOF,
and every part reconnects by itself)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import redis
import requests

from conftest import ROOT, free_port, unique_article, wait_for

pytestmark = pytest.mark.e2e


def _env(tmp_path: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNDICATE_")}
    env.update({"SYNDICATE_DATA_DIR": str(tmp_path / "var"), "SYNDICATE_API_PORT": str(port), "PYTHONUNBUFFERED": "1"})
    return env


def _children_running(parent: int, marker: str) -> list[int]:
    """Pids of ``parent``'s children whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if ppid == parent and marker in cmdline:
            found.append(int(entry.name))
    return found


def test_a_worker_or_the_embedded_redis_killed_under_syndicate_run_is_restarted(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "syndicate.cli.main", "run", "-c", "1"], cwd=ROOT, env=_env(tmp_path, port),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    text = lambda: "".join(lines)  # noqa: E731
    try:
        wait_for(lambda: "Press Ctrl-C to stop." in text() or proc.poll() is not None, timeout=120,
                 message="syndicate run to come up")
        assert proc.poll() is None, text()
        redis_url = re.search(r"embedded Redis (redis://\S+)", text()).group(1)
        [worker] = _children_running(proc.pid, "main@")
        os.kill(worker, signal.SIGKILL)

        wait_for(lambda: "worker-main exited with code -9; restarting it" in text(), message="the exit noticed")
        wait_for(lambda: "worker-main restarted" in text(), message="the worker restarted")
        assert proc.poll() is None
        [again] = wait_for(lambda: _children_running(proc.pid, "main@"), message="the new worker process")
        assert again != worker

        # Now the embedded Redis dies (kill -9): it is restarted on its port, from its AOF.
        [server] = _children_running(proc.pid, "redis-server")
        os.kill(server, signal.SIGKILL)
        wait_for(lambda: "embedded Redis exited with code -9; restarting it" in text(), message="Redis exit noticed")
        wait_for(lambda: _children_running(proc.pid, "redis-server") not in ([], [server]), message="Redis restarted")
        assert proc.poll() is None

        # The API stayed up, and a story posted now reaches the feeds through the new worker.
        tokens = json.loads((tmp_path / "var" / "secrets.json").read_text())
        article = unique_article()
        auth = {"Authorization": f"Bearer {tokens['SYNDICATE_API_TOKEN']}"}
        response = wait_for(lambda: (r := requests.post(f"http://127.0.0.1:{port}/v1/articles", json=article,
                                                        timeout=10, headers=auth)).status_code in (200, 202) and r,
                            timeout=30, message="the API to accept a story once Redis is back")
        event_id = response.json()["event_id"]
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        wait_for(lambda: any(json.loads(r)["subject"] == event_id
                             for r in client.lrange("syndicate:receipts:feeds", 0, -1)),
                 timeout=60, message="the feeds receipt from the restarted worker")
    except BaseException:
        for log in sorted((tmp_path / "var" / "logs").glob("*.log")):
            print(f"==== {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-40:]))
        raise
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    reader.join(5)
    assert code == 0, text()[-3000:]
    assert "stopped cleanly" in text()
