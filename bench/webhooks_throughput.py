"""Webhook deliveries/s through real Celery workers vs a plain single-threaded requests loop.

    .venv/bin/python bench/webhooks_throughput.py [--events 20] [--partners 50] [--concurrency 2]

Starts 50 partner sinks (ThreadingHTTPServer on loopback, keep-alive), registers
one partner per sink, starts `syndicate worker -Q ingest,webhooks` processes
on a private key prefix, publishes the events and times until every sink got
its deliveries (signed, logged in Redis). The baseline then posts the very same
bodies to the same sinks from one requests.Session in a loop, in this run.
Prints both rates and their ratio (the issue asks for >= 1.0x).
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _common  # noqa: E402  (shared bench plumbing: Redis and a private prefix)

os.environ["SYNDICATE_WEBHOOK_ALLOW_NETWORKS"] = "127.0.0.0/8"  # the sinks are on loopback
_REDIS_URL, _EMBEDDED = _common.setup_environment("webhooks")


class Sink:
    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            wbufsize = -1

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with sink.lock:
                    sink.count += 1
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.005)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--partners", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=2, help="prefork processes of the webhooks worker")
    args = parser.parse_args()

    import requests

    from syndicate import events
    from syndicate.config import get_settings
    from syndicate.store import get_redis
    from syndicate.webhooks import deliveries, registry
    from syndicate.webhooks.guard import Guard
    from workers.ingest import enqueue_fanout

    seed = json.loads((ROOT / "examples/articles/us-russia-military-talks.json").read_text())
    section = f"Bench {uuid.uuid4().hex[:6]}"
    sinks = [Sink() for _ in range(args.partners)]
    guard = Guard.from_settings(get_settings())
    for i, sink in enumerate(sinks):
        registry.add({"name": f"bench-{i:03d}", "url": sink.url, "sections": [section]}, guard)

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    worker = subprocess.Popen(
        [sys.executable, "-m", "syndicate.cli.main", "worker", "-Q", "ingest,webhooks", "-c", str(args.concurrency),
         "--loglevel", "WARNING", "-n", f"bench-{uuid.uuid4().hex[:4]}@%h"],
        env=env, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = get_redis()

    def publish(n: int) -> list[str]:
        ids = []
        for _ in range(n):
            article = {**seed, "id": f"bench-{uuid.uuid4().hex[:12]}", "section": section, "labels": [section]}
            result = events.ingest(article)
            enqueue_fanout(result.event_id)
            ids.append(result.event_id)
        return ids

    def received() -> int:
        return sum(s.count for s in sinks)

    try:
        publish(1)  # warm-up: worker start, connections opened
        wait(lambda: received() == args.partners, 60, "the warm-up deliveries")
        base = received()
        total = args.events * args.partners
        started = time.perf_counter()
        event_ids = publish(args.events)
        wait(lambda: received() - base >= total, 120, "the deliveries")
        celery_seconds = time.perf_counter() - started
        ids = [d for e in event_ids for d in deliveries.ids_of_event(e, client)]
        wait(lambda: all(r.get("status") == "succeeded" for r in deliveries.get_many(ids, client)), 30, "the log")
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)

    # Baseline: the same bodies to the same sinks, one keep-alive session, one thread.
    records = deliveries.get_many(ids, client)
    urls = {f"bench-{i:03d}": s.url for i, s in enumerate(sinks)}
    work = [(urls[r["partner"]], r["body"].encode()) for r in records]
    session = requests.Session()
    for url in urls.values():  # open every connection first, as the workers had
        session.post(url, data=b"{}", headers={"Content-Type": "application/json"}, timeout=(5, 15))
    started = time.perf_counter()
    for url, body in work:
        response = session.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=(5, 15),
                                allow_redirects=False)
        assert response.status_code == 204
    loop_seconds = time.perf_counter() - started

    celery_rate = total / celery_seconds
    loop_rate = len(work) / loop_seconds
    print(f"deliveries: {total} ({args.events} events x {args.partners} partners), body {len(work[0][1])} bytes")
    print(f"celery workers (prefork c={args.concurrency}, signed + logged): {celery_rate:8.1f} deliveries/s")
    print(f"plain requests.Session loop (1 thread):          {loop_rate:8.1f} deliveries/s")
    print(f"ratio celery / loop: {celery_rate / loop_rate:.2f}x")


if __name__ == "__main__":
    try:
        main()
    finally:
        _common.cleanup(_EMBEDDED)
