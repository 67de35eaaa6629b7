"""Sustained full pipeline: N distinct articles through `syndicate run` defaults until the backlog is drained.

    .venv/bin/python bench/sustained.py [--count 20000] [--threads 8] [--partners 3] [--subscribers 20]

`syndicate run` starts as a user would start it (embedded Redis, its local
mailbox as the SMTP server, the API, the workers and beat) in a temporary
folder. Three partners point at loopback sinks that answer 200 at once (they
verify nothing), and a newsletter list with a few subscribers sends an edition
every minute to the mailbox. Then N distinct articles (the examples, each with
its own id, url and date) are posted from 8 threads, each with its own
requests.Session, and the bench waits until the backlog is drained: no event
pending or owed by any channel, every queue empty, every feed rendered at its
last change with the newest stories in the main feed, every partner delivery
recorded as succeeded.

Printed: the posting rate, the end-to-end rate (first post until drained), the
time each channel took to drain, and a line every few seconds while it runs
(queue depths and what each channel still owes); then, to show where the time
went, the CPU seconds each part of the run used (API, each worker, beat,
mailbox, Redis, this bench), the CPU per article, the feed renders per article
and the commands Redis spent most time in. The figure is the end-to-end
rate; the target (issue 12) is at least 100 articles/s. There is no peer
measured in the same run: nothing else does this whole job.
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from results import record  # bench/ is on sys.path: run as bench/<name>.py

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

# Partner sinks in their own process, so their threads never compete with the posting threads for
# one interpreter: each answers 200 with a tiny body. What they received is read from the store's
# delivery records instead (every delivery recorded as succeeded).
SINKS = r"""
import http.server, sys, threading
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = -1
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
ports = []
for _ in range(int(sys.argv[1])):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ports.append(str(server.server_address[1]))
print(" ".join(ports), flush=True)
sys.stdin.read()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def articles(count: int, run: str) -> list[dict]:
    """``count`` distinct articles from the examples: own id, url and date (one second apart, newest last)."""
    import datetime as dt

    seeds = [json.loads(p.read_text()) for p in sorted((ROOT / "examples/articles").glob("*.json"))]
    start = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(seconds=count + 60)
    out = []
    for i in range(count):
        article = copy.deepcopy(seeds[i % len(seeds)])
        article["id"] = f"{article['id'][:60]}-{run}-{i}"
        article["url"] = f"{article['url'].split('?')[0]}?sustained={run}-{i}"
        when = (start + dt.timedelta(seconds=i)).isoformat()
        article["datePublished"] = article["dateModified"] = when
        article["version"] = 1
        out.append(article)
    return out


class Run:
    """`syndicate run` in its own process group, stopped (and, if need be, killed) on every exit path."""

    def __init__(self, folder: Path, env: dict[str, str], options: list[str]) -> None:
        self.folder = folder
        self.log = open(folder / "run.log", "ab")
        self.proc = subprocess.Popen([PYTHON, "-m", "syndicate.cli.main", "run", *options], cwd=folder, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)

    def wait_ready(self, timeout: float = 120) -> dict:
        path = self.folder / "data" / "instance.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"syndicate run exited with {self.proc.returncode}; see {self.folder / 'run.log'}")
            if path.exists():
                try:
                    return json.loads(path.read_text())
                except ValueError:
                    pass
            time.sleep(0.2)
        raise SystemExit(f"syndicate run did not come up in {timeout:.0f}s; see {self.folder / 'run.log'}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # its own shutdown stops every child it started
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything left in its group
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.log.close()


class Poster:
    """Posts the articles from ``threads`` threads, each with its own keep-alive session."""

    def __init__(self, url: str, token: str, items: list[dict], threads: int) -> None:
        self.url, self.token, self.items, self.threads = f"{url}/v1/articles", token, items, threads
        self.posted = 0
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.started = self.finished = 0.0

    def _work(self, part: list[dict]) -> None:
        import requests

        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {self.token}"
            for article in part:
                body = json.dumps(article).encode()
                try:
                    answer = session.post(self.url, data=body, headers={"Content-Type": "application/json"},
                                          timeout=60)
                    problem = None if answer.status_code in (200, 202) else f"{answer.status_code} {answer.text[:200]}"
                except requests.RequestException as exc:
                    problem = str(exc)
                with self.lock:
                    if problem is None:
                        self.posted += 1
                    elif len(self.errors) < 5:
                        self.errors.append(problem)

    def start(self) -> list[threading.Thread]:
        parts = [self.items[i::self.threads] for i in range(self.threads)]
        self.started = time.perf_counter()
        workers = [threading.Thread(target=self._work, args=(p,), daemon=True) for p in parts]
        for w in workers:
            w.start()
        return workers


def setup(api: str, admin: str, sink_ports: list[str], subscribers: int) -> list[str]:
    """The partners (one per sink) and a list sending every minute; returns the partner names."""
    import requests

    headers = {"Authorization": f"Bearer {admin}"}
    names = []
    for n, port in enumerate(sink_ports):
        name = f"sink-{n}"
        answer = requests.post(f"{api}/v1/partners", headers=headers, timeout=30,
                               json={"name": name, "url": f"http://127.0.0.1:{port}/hook"})
        answer.raise_for_status()
        names.append(name)
    requests.put(f"{api}/v1/newsletters/daily", headers=headers, timeout=30,
                 json={"name": "Sustained Daily", "schedule": "* * * * *", "timezone": "UTC"}).raise_for_status()
    rows = io.StringIO()
    writer = csv.writer(rows)
    writer.writerow(["email"])
    writer.writerows([f"reader{i}@sustained.example"] for i in range(subscribers))
    requests.post(f"{api}/v1/newsletters/daily/subscribers/import", data=rows.getvalue().encode(), timeout=30,
                  headers={**headers, "Content-Type": "text/csv"}).raise_for_status()
    return names


class Backlog:
    """What is still to do, read straight from the instance's Redis."""

    CHANNELS = ("feeds", "webhooks", "newsletter")

    def __init__(self, partners: list[str]) -> None:
        from syndicate.store import get_redis, key

        self.r, self.key, self.partners = get_redis(), key, partners

    def sample(self) -> dict:
        from syndicate.events import owed_counts
        from syndicate.queues import queue_depths

        depths = queue_depths()
        owed = owed_counts(self.CHANNELS)
        with self.r.pipeline(transaction=False) as pipe:
            pipe.zcard(self.key("events:pending"))
            pipe.zcard(self.key("webhooks", "schedule"))
            pipe.zcard(self.key("webhooks", "deliveries", "failed"))
            for name in self.partners:
                pipe.zcard(self.key("webhooks", "partner-deliveries", name))
            pending, scheduled, failed, *per_partner = pipe.execute()
        return {"queues": depths, "owed": owed, "pending": pending, "scheduled": scheduled, "failed": failed,
                "deliveries": sum(per_partner), "stale_feeds": self.stale_feeds()}

    def stale_feeds(self) -> list[str]:
        """Feeds whose last change is not rendered yet (or is being rendered)."""
        from syndicate.feeds.index import feed_ids

        ids = feed_ids(self.r)
        with self.r.pipeline(transaction=False) as pipe:
            for feed_id in ids:
                pipe.get(self.key("feeds", "gen", feed_id))
                pipe.hget(self.key("feeds", "doc", feed_id), "gen")
                pipe.exists(self.key("feeds", "lock", feed_id))
            answers = pipe.execute()
        return [feed_id for n, feed_id in enumerate(ids)
                if int(answers[3 * n + 1] or -1) < int(answers[3 * n] or 0) or answers[3 * n + 2]]

    def renders(self) -> int:
        """Feed renders stored so far, every feed together."""
        from syndicate.feeds.index import feed_ids

        with self.r.pipeline(transaction=False) as pipe:
            for feed_id in feed_ids(self.r):
                pipe.hget(self.key("feeds", "doc", feed_id), "renders")
            return sum(int(n or 0) for n in pipe.execute())

    def newest_in_main_feed(self, newest: list[str]) -> bool:
        from syndicate.feeds.index import index_key
        from syndicate.feeds.model import MAIN_FEED

        held = {str(m) for m in self.r.zrange(index_key(MAIN_FEED), 0, -1)}
        return bool(held) and all(article_id in held for article_id in newest[: len(held)])


def cpu_by_role(session: int, redis_port: str) -> dict[str, float]:
    """CPU seconds used so far by every process of ``session`` (the run's), summed by role.

    Roles come from the command line: the API, each worker (a prefork pool's children carry
    their parent's command line), beat, the mailbox, Redis.
    """
    tick = os.sysconf("SC_CLK_TCK")
    roles: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        words = [a.decode(errors="replace") for a in argv if a]
        # The embedded Redis runs in a session of its own: found by its port.
        is_redis = any("redis-server" in w for w in words) and any(w.endswith(f":{redis_port}") for w in words)
        if int(fields[3]) != session and not is_redis:
            continue
        if is_redis:
            role = "redis"
        elif "worker" in words:
            role = "worker " + (words[words.index("-Q") + 1] if "-Q" in words else "?")
        else:
            role = next((w for w in ("api", "beat", "mailbox", "run") if w in words), "other")
        roles[role] = roles.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return roles


def redis_commandstats(client, top: int = 8) -> list[str]:
    """The commands Redis spent the most time in, from INFO commandstats."""
    stats = client.info("commandstats")
    rows = sorted(((v["usec"], k.removeprefix("cmdstat_"), v["calls"]) for k, v in stats.items()),
                  reverse=True)[:top]
    return [f"{name} {calls} calls {usec / 1e6:.1f}s" for usec, name, calls in rows]


def interrupted(*_args: object) -> None:
    """SIGTERM stops the bench as Ctrl-C does: through the clean-up below."""
    raise KeyboardInterrupt


def channel_done(name: str, s: dict, expected_deliveries: int) -> bool:
    if s["queues"].get(name) or s["owed"].get(name):
        return False
    if name == "feeds":
        return not s["stale_feeds"]
    if name == "webhooks":
        return s["deliveries"] >= expected_deliveries and not s["scheduled"]
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--partners", type=int, default=3)
    parser.add_argument("--subscribers", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=None,
                        help="passed to `syndicate run -c` (default: its own default)")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between progress lines")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, data)")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="syndicate-sustained-"))
    data = folder / "data"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SYNDICATE_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update({"SYNDICATE_DATA_DIR": str(data), "SYNDICATE_API_PORT": str(free_port()),
                "SYNDICATE_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8", "PYTHONPATH": str(ROOT / "src")})
    # This process reads the same settings, so it reaches the run's Redis through its instance file;
    # only where run_all.py collects the figures is kept.
    for k in [k for k in os.environ if k.startswith("SYNDICATE_") and k != "SYNDICATE_BENCH_RESULTS"]:
        del os.environ[k]
    os.environ.update({k: v for k, v in env.items() if k.startswith("SYNDICATE_")})
    signal.signal(signal.SIGTERM, interrupted)

    sinks = subprocess.Popen([PYTHON, "-c", SINKS, str(args.partners)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, start_new_session=True)
    run: Run | None = None
    try:
        sink_ports = sinks.stdout.readline().split()
        run = Run(folder, env, [] if args.concurrency is None else ["-c", str(args.concurrency)])
        info = run.wait_ready()
        from syndicate.config import reset_settings

        reset_settings()
        tokens = json.loads((data / "secrets.json").read_text())
        partners = setup(info["api_url"], tokens["SYNDICATE_ADMIN_TOKEN"], sink_ports, args.subscribers)
        backlog = Backlog(partners)
        redis_port = info["redis_url"].rsplit(":", 1)[1].split("/")[0]
        items = articles(args.count, uuid.uuid4().hex[:6])
        expected_deliveries = args.count * len(partners)
        print(f"syndicate run up ({info['api_url']}, Redis {info['redis_url']}); posting {args.count} articles "
              f"from {args.threads} threads; {len(partners)} partners, a list of {args.subscribers}; "
              f"folder {folder}", flush=True)

        poster = Poster(info["api_url"], tokens["SYNDICATE_API_TOKEN"], items, args.threads)
        renders_before = backlog.renders()
        cpu_before = {**cpu_by_role(run.proc.pid, redis_port), "bench (posting, polling)": sum(os.times()[:2])}
        backlog.r.config_resetstat()
        threads = poster.start()
        start = poster.started
        drained: dict[str, float] = {}
        next_line = 0.0
        s: dict = {}
        while True:
            now = time.perf_counter()
            if not poster.finished and not any(t.is_alive() for t in threads):
                poster.finished = now
            s = backlog.sample()
            if poster.finished and s["pending"] == 0 and not s["queues"].get("ingest"):
                for name in Backlog.CHANNELS:
                    if name not in drained and channel_done(name, s, expected_deliveries):
                        drained[name] = now
                    elif name in drained and not channel_done(name, s, expected_deliveries):
                        del drained[name]  # a late re-dispatch: not drained after all
            if now >= next_line:
                q, o = s["queues"], s["owed"]
                print(f"[{now - start:6.0f}s] posted {poster.posted:>6}  pending {s['pending']:>5}  "
                      f"queues ingest {q['ingest']:>5} feeds {q['feeds']:>5} webhooks {q['webhooks']:>5} "
                      f"newsletter {q['newsletter']:>5}  owed feeds {o['feeds']:>5} webhooks {o['webhooks']:>5} "
                      f"newsletter {o['newsletter']:>5}  deliveries {s['deliveries']:>6}/{expected_deliveries}  "
                      f"stale feeds {len(s['stale_feeds'])}", flush=True)
                next_line = now + args.every
            if len(drained) == len(Backlog.CHANNELS):
                break
            if now - start > args.timeout:
                raise SystemExit(f"not drained after {args.timeout:.0f}s: {s}")
            if poster.errors and poster.finished:
                break
            time.sleep(0.5)
        end = max(drained.values()) if drained else time.perf_counter()
        cpu_after = {**cpu_by_role(run.proc.pid, redis_port), "bench (posting, polling)": sum(os.times()[:2])}
        used = {role: cpu_after[role] - cpu_before.get(role, 0.0) for role in cpu_after}
        print("CPU seconds while it ran: " + ", ".join(f"{role} {secs:.1f}" for role, secs in
                                                       sorted(used.items(), key=lambda kv: -kv[1])), flush=True)
        renders = backlog.renders() - renders_before
        total_cpu = sum(used.values())
        print(f"CPU per article: {1000 * total_cpu / max(poster.posted, 1):.1f} ms in all; feed renders "
              f"{renders} ({renders / max(poster.posted, 1):.2f} per article)", flush=True)
        print("Redis time by command: " + "; ".join(redis_commandstats(backlog.r)), flush=True)
        if poster.errors:
            print(f"posting errors (first {len(poster.errors)}): {poster.errors}", file=sys.stderr)
        newest = [a["id"] for a in reversed(items)]
        in_feed = backlog.newest_in_main_feed(newest)
        post_rate = poster.posted / (poster.finished - start)
        rate = poster.posted / (end - start)
        print(f"articles posted: {poster.posted}/{args.count} in {poster.finished - start:.1f}s "
              f"= {post_rate:.0f}/s from {args.threads} threads")
        for name in Backlog.CHANNELS:
            if name in drained:
                print(f"  {name:<10} drained {drained[name] - start:7.1f}s after the first post")
        print(f"end to end (first post until drained): {end - start:.1f}s = {rate:.1f} articles/s; "
              f"deliveries {s['deliveries']}/{expected_deliveries} (failed {s['failed']}); newest stories in "
              f"the main feed: {'yes' if in_feed else 'NO'}")
        complete = poster.posted == args.count and in_feed and s["failed"] == 0
        record("sustained full pipeline", rate, "articles/s", target=">= 100/s", met=complete and rate >= 100,
               note=f"{args.count} articles, {args.threads} posting threads, posted at {post_rate:.0f}/s"
                    + ("" if complete else "; INCOMPLETE"))
        return 0 if complete else 1
    except KeyboardInterrupt:
        print("interrupted; stopping syndicate run", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if run is not None:
            run.stop()
        if sinks.poll() is None:
            sinks.stdin.close()
            sinks.terminate()
            sinks.wait(10)
        if args.keep:
            print(f"kept {folder}", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
