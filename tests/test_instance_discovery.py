"""The CLI finds its instance; the public URL follows the API's port; bad settings are one line.

A new user runs ``syndicate run`` in a folder and then, in another terminal in the
same folder, ``syndicate status`` or ``syndicate partners add``: no port or token
to copy. These tests run the real commands as subprocesses in a temporary folder
with no ``SYNDICATE_*`` variable set, as that user's shell has none.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading

import pytest
import requests

from conftest import EXAMPLES, ROOT, free_port, wait_for


def clean_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNDICATE_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update({f"SYNDICATE_{k}": v for k, v in settings.items()})
    return env


def syndicate(cwd, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "syndicate.cli.main", *args], cwd=cwd, env=env or clean_env(),
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(done: subprocess.CompletedProcess, code: int) -> str:
    assert done.returncode == code, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


class Run:
    """``syndicate run`` started in ``folder`` as a user starts it; output collected in a thread."""

    def __init__(self, folder, **settings: str) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen([sys.executable, "-m", "syndicate.cli.main", "run", "-c", "1"], cwd=folder,
                                     env=clean_env(**settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self.thread = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self.thread.start()

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_running(self) -> None:
        wait_for(lambda: "Press Ctrl-C to stop." in self.text or self.proc.poll() is not None, timeout=90,
                 interval=0.1, message="syndicate run to come up")
        assert self.proc.poll() is None, self.text

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise
        finally:
            self.thread.join(5)


@pytest.mark.e2e
def test_commands_beside_a_run_find_it_and_links_follow_its_port(tmp_path):
    port = free_port()
    run = Run(tmp_path, API_PORT=str(port), WEBHOOK_ALLOW_NETWORKS="127.0.0.0/8")
    try:
        run.wait_running()
        redis_url = re.search(r"embedded Redis (redis://\S+)", run.text).group(1)
        found = tmp_path / "var" / "instance.json"
        record = json.loads(found.read_text())
        assert record["redis_url"] == redis_url and record["pid"] == run.proc.pid
        assert record["api_url"] == f"http://127.0.0.1:{port}"
        assert stat.S_IMODE(found.stat().st_mode) == 0o600

        # No variable set, no port pasted: each command reaches the run's Redis.
        status = syndicate(tmp_path, "status")
        assert status.returncode == 0, status.stderr
        assert redis_url in status.stdout
        added = syndicate(tmp_path, "partners", "add", "acme", "http://127.0.0.1:9/hook",
                          env=clean_env(WEBHOOK_ALLOW_NETWORKS="127.0.0.0/8"))
        assert added.returncode == 0, added.stdout + added.stderr
        assert "acme" in syndicate(tmp_path, "partners", "list").stdout
        published = syndicate(tmp_path, "publish", str(EXAMPLES / "us-russia-military-talks.json"))
        assert published.returncode == 0 and "accepted" in published.stdout, published.stdout + published.stderr
        # SYNDICATE_DATA_DIR names the instance from any other folder.
        elsewhere = syndicate(ROOT, "status", env=clean_env(DATA_DIR=str(tmp_path / "var")))
        assert elsewhere.returncode == 0 and redis_url in elsewhere.stdout, elsewhere.stderr

        # Nothing set SYNDICATE_PUBLIC_URL: the feed's own links name the port the API listens on.
        def feed():
            r = requests.get(f"http://127.0.0.1:{port}/feeds/all.json", timeout=5)
            return r.status_code == 200 and r.json().get("items") and r.json()

        document = wait_for(feed, timeout=60, interval=0.2, message="the published story in the JSON feed")
        assert document["feed_url"] == f"http://127.0.0.1:{port}/feeds/all.json"
    finally:
        code = run.stop()
    assert code == 0, run.text[-3000:]
    assert not found.exists(), "the instance file outlived its run"
    # With the run gone, a command says so in one line instead of reaching a stale port.
    assert "syndicate run" in one_line_error(syndicate(tmp_path, "status"), 2)

    # A restart of the same folder gets its Redis back on the same port.
    again = Run(tmp_path, API_PORT=str(port))
    try:
        again.wait_running()
        assert re.search(r"embedded Redis (redis://\S+)", again.text).group(1) == redis_url
    finally:
        assert again.stop() == 0, again.text[-3000:]


@pytest.mark.e2e
def test_run_refuses_a_taken_api_port_before_it_says_it_runs(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = syndicate(tmp_path, "run", "-c", "1", env=clean_env(API_PORT=str(port)), timeout=30)
    line = one_line_error(done, 1)
    assert f"port {port}" in line and "SYNDICATE_API_PORT" in line
    assert "is running" not in done.stdout and "embedded Redis" not in done.stdout
    assert not (tmp_path / "var" / "instance.json").exists()


def test_a_stale_instance_file_is_ignored_with_a_hint(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "instance.json").write_text(json.dumps(
        {"pid": int(gone.stdout), "redis_url": f"redis://127.0.0.1:{free_port()}/0"}))
    done = syndicate(tmp_path, "status")
    one_line_error(done, 2)  # nothing to connect to: SYNDICATE_REDIS_URL is not set
    hints = [line for line in done.stderr.splitlines() if line.startswith("note: ignoring")]
    assert len(hints) == 1 and "is gone" in hints[0], done.stderr


def test_an_explicit_redis_url_wins_over_the_instance_file(tmp_path):
    live = os.environ["SYNDICATE_REDIS_URL"]  # the test run's Redis, answering
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "instance.json").write_text(json.dumps({"pid": os.getpid(), "redis_url": live}))
    prefix = os.environ["SYNDICATE_REDIS_PREFIX"]
    found = syndicate(tmp_path, "status", env=clean_env(REDIS_PREFIX=prefix))
    assert found.returncode == 0 and live in found.stdout, found.stderr
    closed = f"redis://127.0.0.1:{free_port()}/0"
    explicit = syndicate(tmp_path, "status", env=clean_env(REDIS_PREFIX=prefix, REDIS_URL=closed))
    assert closed in one_line_error(explicit, 1)


@pytest.mark.parametrize(("name", "value", "says"), [
    ("REDIS_URL", "notaurl", "redis://host:6379/0"),
    ("REDIS_URL", "redis://host:notaport", "notaport"),
    ("REDIS_URL", "redis://user:secret@host:notaport/0", "SYNDICATE_REDIS_URL"),
    ("SMTP_URL", "bogus://", "smtp://host:port"),
    ("SMTP_URL", "smtp://host:notaport", "SYNDICATE_SMTP_URL"),
])
def test_a_malformed_url_is_one_line_and_exit_2(tmp_path, name, value, says):
    settings = {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", name: value}
    line = one_line_error(syndicate(tmp_path, "status", env=clean_env(**settings)), 2)
    assert says in line and "secret" not in line


@pytest.fixture()
def fresh(monkeypatch, tmp_path):
    """Settings as a laptop's shell gives them: no SYNDICATE_* variable, a folder of its own."""
    from syndicate.config import load_settings

    for name in list(os.environ):
        if name.startswith("SYNDICATE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return load_settings


def test_the_public_url_follows_the_api_host_and_port(fresh, monkeypatch):
    from syndicate.config import start_warnings

    assert fresh().public_url == "http://127.0.0.1:8000"
    monkeypatch.setenv("SYNDICATE_API_PORT", "8123")
    settings = fresh()
    assert settings.public_url == settings.site_url == "http://127.0.0.1:8123"
    assert start_warnings(settings) == []
    monkeypatch.setenv("SYNDICATE_API_HOST", "::1")
    assert fresh().public_url == "http://[::1]:8123"
    monkeypatch.setenv("SYNDICATE_API_HOST", "0.0.0.0")
    assert fresh().public_url == "http://127.0.0.1:8123"
    assert any("SYNDICATE_PUBLIC_URL is not set" in line for line in start_warnings(fresh()))
    monkeypatch.setenv("SYNDICATE_PUBLIC_URL", "https://news.example/")
    assert fresh().public_url == "https://news.example"
    assert start_warnings(fresh()) == []


def test_plain_http_on_a_public_host_is_warned_about(fresh, monkeypatch):
    from syndicate.config import start_warnings

    monkeypatch.setenv("SYNDICATE_PUBLIC_URL", "http://news.example")
    (warning,) = start_warnings(fresh())
    assert "RFC 8058" in warning and "https" in warning


def test_tokens_come_from_the_data_dir_unless_set(fresh, monkeypatch, tmp_path):
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "secrets.json").write_text(json.dumps({
        "SYNDICATE_API_TOKEN": "kept-ingest", "SYNDICATE_ADMIN_TOKEN": "kept-admin", "SYNDICATE_SECRET_KEY": "kept-key"}))
    settings = fresh()
    assert (settings.api_token, settings.admin_token, settings.secret_key) == ("kept-ingest", "kept-admin", "kept-key")
    monkeypatch.setenv("SYNDICATE_API_TOKEN", "from-env")
    assert fresh().api_token == "from-env"


def test_the_embedded_redis_keeps_its_port_across_restarts_when_free(tmp_path):
    from syndicate.embedded import EmbeddedRedis

    with EmbeddedRedis(tmp_path / "redis") as first:
        port = first.port
    with EmbeddedRedis(tmp_path / "redis") as second:
        assert second.port == port
    with socket.socket() as taken:  # someone else took it meanwhile: another free port, no failure
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the stopped Redis left TIME_WAIT
        taken.bind(("127.0.0.1", port))
        taken.listen()
        with EmbeddedRedis(tmp_path / "redis") as third:
            assert third.port != port
