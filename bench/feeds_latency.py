"""Publish -> visible latency of the feeds at a steady 20 stories/s.

Stories are POSTed to a real API (subprocess) and flow through real workers
(ingest fan-out, then the feeds queue); an observer polls the stored documents
in Redis (the bytes the API serves) and notes when each story is in its
section feed and the main feed. One render stores all three formats in one
atomic step, so "in the JSON document" is "in all three formats".
Targets: p50 < 50 ms, p99 < 250 ms. Run:  .venv/bin/python bench/feeds_latency.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import threading
import time

import requests

import feeds_env
from feeds_env import SEED, start_api, start_workers
from results import record  # bench/ is on sys.path: run as bench/<name>.py

SECTIONS = ("World", "US", "Business", "Sports")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=20.0)
    args = parser.parse_args()

    from syndicate.feeds import slugify, state
    from syndicate.store import get_redis

    api = start_api()
    start_workers("ingest", concurrency=1)
    start_workers("feeds", concurrency=2)
    seed = json.loads(SEED.read_text())
    client = get_redis(decode=False)
    feeds = ["all"] + [f"sections/{slugify(s)}" for s in SECTIONS]
    posted: dict[str, tuple[float, str]] = {}  # article id -> (t posted, section feed)
    seen: dict[str, float] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def observe() -> None:
        etags: dict[str, bytes | None] = {}
        bodies: dict[str, bytes] = {}
        while not stop.is_set():
            with client.pipeline(transaction=False) as pipe:
                for feed in feeds:
                    pipe.hget(state.doc_key(feed), "json:etag")
                current = dict(zip(feeds, pipe.execute()))
            changed = [f for f in feeds if current[f] != etags.get(f)]
            if changed:
                for feed in changed:
                    bodies[feed] = state.read_bodies(client, feed, ["json"])["json"] or b""
                    etags[feed] = current[feed]
                now = time.perf_counter()
                with lock:
                    waiting = [(a, f) for a, (_, f) in posted.items() if a not in seen]
                for article_id, section_feed in waiting:
                    needle = f'"article_id":"{article_id}"'.encode()
                    if needle in bodies.get("all", b"") and needle in bodies.get(section_feed, b""):
                        seen[article_id] = now
            time.sleep(0.001)

    session = requests.Session()
    headers = {"Authorization": f"Bearer {feeds_env.TOKEN}", "Content-Type": "application/json"}

    def post(n: int) -> None:
        section = SECTIONS[n % len(SECTIONS)]
        stamp = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=365)).isoformat().replace("+00:00", "Z")
        article = {**seed, "id": f"lat-{n:05d}", "section": section, "labels": [section],
                   "headline": f"Latency story {n}", "datePublished": stamp, "dateModified": stamp}
        t0 = time.perf_counter()
        with lock:
            posted[article["id"]] = (t0, f"sections/{slugify(section)}")
        response = session.post(f"{api}/v1/articles", data=json.dumps(article), headers=headers)
        response.raise_for_status()

    # Warm up the workers and the feeds (first renders, imports, connections).
    for n in range(8):
        post(100_000 + n)
        time.sleep(0.2)
    time.sleep(3)
    observer = threading.Thread(target=observe, daemon=True)
    posted.clear()
    observer.start()

    interval, count = 1.0 / args.rate, int(args.seconds * args.rate)
    start = time.perf_counter()
    for n in range(count):
        delay = start + n * interval - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        post(n)
    deadline = time.perf_counter() + 15
    while len(seen) < count and time.perf_counter() < deadline:
        time.sleep(0.05)
    stop.set()
    observer.join()

    latencies = sorted((seen[a] - t0) * 1000 for a, (t0, _) in posted.items() if a in seen)
    lost = count - len(latencies)
    achieved = count / (time.perf_counter() - start)
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"{count} stories at {args.rate:.0f}/s over {args.seconds:.0f}s (posting took {count / achieved:.1f}s); "
          f"{lost} never seen")
    print(f"{'':<6}{'ms':>9}{'target':>9}{'ratio':>8}")
    for label, value, target in (("p50", p50, 50.0), ("p99", p99, 250.0)):
        print(f"{label:<6}{value:>9.1f}{target:>9.0f}{value / target:>8.2f}  {'ok' if value < target else 'ABOVE TARGET'}")
    print(f"max {latencies[-1]:.1f} ms, mean {statistics.fmean(latencies):.1f} ms")
    record(f"publish -> visible in feeds, p50 at {args.rate:.0f}/s", p50, "ms", target="<= 15 ms", met=p50 <= 15,
           note=f"{lost} never seen")
    record(f"publish -> visible in feeds, p99 at {args.rate:.0f}/s", p99, "ms", target="<= 60 ms", met=p99 <= 60)


if __name__ == "__main__":
    main()
