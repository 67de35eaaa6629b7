"""Webhook deliveries/s through real Celery workers vs a plain single-threaded requests loop.

    .venv/bin/python bench/webhooks_throughput.py [--events 20] [--partners 50] [--concurrency 2] [--rounds 3]

Starts 50 partner sinks (ThreadingHTTPServer on loopback, keep-alive), registers
one partner per sink, starts `syndicate worker -Q ingest,webhooks` processes
on a private key prefix, publishes the events and times until every sink got
its deliveries (signed, logged in Redis). The baseline then posts the very same
bodies to the same sinks from one requests.Session in a loop, in this run.
Rounds alternate between the two; the best of each is compared.
Prints both rates and their ratio (the issue asks for >= 1.5x).

A plain ``requests.Session`` keeps connection pools for 10 hosts; over 50
sinks in event order most of its posts open a new connection. For reference
the bench also times a loop whose session keeps a pool per sink (every post
on a kept-alive connection, nothing else): printed, and noted beside the
figure, not the baseline the target is set against.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path
from results import record  # bench/ is on sys.path: run as bench/<name>.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _common  # noqa: E402  (shared bench plumbing: Redis and a private prefix)
from webhooks_sinks import Sink, start_worker, stop_worker, wait  # noqa: E402

os.environ["SYNDICATE_WEBHOOK_ALLOW_NETWORKS"] = "127.0.0.0/8"  # the sinks are on loopback
_REDIS_URL, _EMBEDDED = _common.setup_environment("webhooks")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--partners", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=2, help="prefork processes of the webhooks worker")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import requests

    from syndicate import events
    from syndicate.config import get_settings
    from syndicate.store import get_redis
    from syndicate.webhooks import deliveries, registry
    from syndicate.webhooks.guard import Guard
    from syndicate.workers.ingest import enqueue_fanout

    seed = json.loads((ROOT / "examples/articles/us-russia-military-talks.json").read_text())
    section = f"Bench {uuid.uuid4().hex[:6]}"
    sinks = [Sink() for _ in range(args.partners)]
    guard = Guard.from_settings(get_settings())
    for i, sink in enumerate(sinks):
        registry.add({"name": f"bench-{i:03d}", "url": sink.url, "sections": [section]}, guard)

    worker = start_worker("ingest,webhooks", args.concurrency)
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
        return sum(s.count() for s in sinks)

    session = requests.Session()
    pooled = requests.Session()  # the reference: a kept-alive connection to every sink
    pooled.mount("http://", requests.adapters.HTTPAdapter(pool_connections=args.partners))
    urls = {f"bench-{i:03d}": s.url for i, s in enumerate(sinks)}

    def celery_round() -> tuple[float, list[str]]:
        base = received()
        started = time.perf_counter()
        event_ids = publish(args.events)
        wait(lambda: received() - base >= total, 120, "the deliveries")
        seconds = time.perf_counter() - started
        ids = [d for e in event_ids for d in deliveries.ids_of_event(e, client)]
        wait(lambda: all(r.get("status") == "succeeded" for r in deliveries.get_many(ids, client)), 30, "the log")
        return seconds, ids

    def loop_round(ids: list[str], session: requests.Session = session) -> float:
        # The same bodies to the same sinks, one keep-alive session, one thread.
        work = [(urls[r["partner"]], r["body"].encode()) for r in deliveries.get_many(ids, client)]
        started = time.perf_counter()
        for url, body in work:
            response = session.post(url, data=body, headers={"Content-Type": "application/json"},
                                    timeout=(5, 15), allow_redirects=False)
            assert response.status_code == 200
        return time.perf_counter() - started

    total = args.events * args.partners
    celery_times: list[float] = []
    loop_times: list[float] = []
    pooled_times: list[float] = []
    try:
        publish(1)  # warm-up: worker start, connections opened
        wait(lambda: received() == args.partners, 60, "the warm-up deliveries")
        for url in urls.values():  # the loops open their connections first too
            session.post(url, data=b"{}", headers={"Content-Type": "application/json"}, timeout=(5, 15))
            pooled.post(url, data=b"{}", headers={"Content-Type": "application/json"}, timeout=(5, 15))
        # Interleaved rounds, so load from elsewhere on the machine hits both sides alike.
        for _ in range(args.rounds):
            seconds, ids = celery_round()
            celery_times.append(seconds)
            loop_times.append(loop_round(ids))
            pooled_times.append(loop_round(ids, pooled))
    finally:
        stop_worker(worker)

    body_size = len(deliveries.get_many(ids[:1], client)[0]["body"].encode())
    celery_rate = total / min(celery_times)
    loop_rate = total / min(loop_times)
    pooled_rate = total / min(pooled_times)
    print(f"deliveries: {total} per round ({args.events} events x {args.partners} partners), body {body_size} bytes, "
          f"{args.rounds} interleaved rounds, best of each")
    print(f"celery workers (prefork c={args.concurrency}, signed + logged): {celery_rate:8.1f} deliveries/s")
    print(f"plain requests.Session loop (1 thread):          {loop_rate:8.1f} deliveries/s")
    print(f"reference: loop with a pool per sink (1 thread): {pooled_rate:8.1f} deliveries/s "
          f"(celery / it: {celery_rate / pooled_rate:.2f}x)")
    print("per round: " + "  ".join(f"{l / c:.2f}x" for c, l in zip(celery_times, loop_times)))
    print(f"ratio celery / loop: {celery_rate / loop_rate:.2f}x")
    record(f"webhook deliveries ({args.partners} sinks)", celery_rate, "deliveries/s", "raw requests loop", loop_rate,
           ">= 1.5x", celery_rate / loop_rate >= 1.5,
           note=f"a loop keeping a connection to every sink: {pooled_rate:,.0f} deliveries/s")

if __name__ == "__main__":
    try:
        main()
    finally:
        _common.cleanup(_EMBEDDED)
