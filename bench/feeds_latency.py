"""Publish -> visible latency of the feeds at a steady 20 stories/s.

Stories are POSTed to a real API (subprocess) and flow through real workers
(ingest fan-out, then the feeds queue). An observer follows the store's stream of
stored renders (``feeds:changes``, written in the same step as the documents) and
notes two moments per story:

* stored: its section feed and the main feed, as stored in Redis, both hold it
  (one render stores all three formats in one atomic step, so "in the JSON
  document" is "in all three formats");
* served: a GET of both feeds from the API (through its in-memory feed cache,
  which must have dropped its old copy) returns documents that hold it, i.e.
  what a polling reader sees.

Targets (issue 12): served p50 <= 15 ms, p99 <= 60 ms.
Run:  .venv/bin/python bench/feeds_latency.py [--seconds 10] [--rate 20] [--pool prefork|threads]
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
    parser.add_argument("--pool", choices=("prefork", "threads"), default="prefork")
    args = parser.parse_args()

    from syndicate.feeds import slugify, state
    from syndicate.store import get_redis

    api = start_api()
    # prefork: an ingest process and two feeds processes; threads: as `syndicate run` starts its workers.
    threads = args.pool == "threads"
    start_workers("ingest", concurrency=4 if threads else 1, pool=args.pool)
    start_workers("feeds", concurrency=4 if threads else 2, pool=args.pool)
    seed = json.loads(SEED.read_text())
    client = get_redis(decode=False)
    feeds = ["all"] + [f"sections/{slugify(s)}" for s in SECTIONS]
    posted: dict[str, tuple[float, str]] = {}  # article id -> (t posted, section feed)
    seen: dict[str, float] = {}  # served by the API
    seen_stored: dict[str, float] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def stored_story(body: bytes, article_id: str) -> bool:
        return f'"article_id":"{article_id}"'.encode() in body

    def observe() -> None:
        """Wake on each stored render, read the changed feeds from the store, then from the API."""
        reader = requests.Session()
        stream = state.changes_key()
        last = client.xrevrange(stream, count=1)
        cursor = last[0][0] if last else b"0-0"
        stored: dict[str, bytes] = {}
        served: dict[str, bytes] = {}
        while not stop.is_set():
            answer = client.xread({stream: cursor}, count=1000, block=100)
            changed = set()
            for _name, entries in answer or ():
                for entry_id, fields in entries:
                    cursor = entry_id
                    changed.add(fields[b"feed"].decode())
            changed &= set(feeds)
            if not changed:
                continue
            now = time.perf_counter()
            etags = {}
            for feed in changed:
                body, etag = client.hmget(state.doc_key(feed), ["json:gz", "json:etag"])
                stored[feed], etags[feed] = state.body_of(body, None) or b"", etag.decode()
            with lock:
                waiting = [(a, f) for a, (_, f) in posted.items() if a not in seen]
            for article_id, section_feed in waiting:
                if article_id not in seen_stored and all(stored_story(stored.get(f, b""), article_id)
                                                         for f in ("all", section_feed)):
                    seen_stored[article_id] = now
            for feed in changed:  # as a reader polls: until the API serves the stored render (or a newer one)
                target, deadline = etags[feed], time.perf_counter() + 2
                while time.perf_counter() < deadline:
                    response = reader.get(f"{api}/feeds/{feed}.json")
                    if response.headers.get("etag") == target:
                        break
                    target = (client.hget(state.doc_key(feed), "json:etag") or b"").decode()
                    if response.headers.get("etag") == target:
                        break
                    time.sleep(0.0002)
                served[feed] = response.content
            now = time.perf_counter()
            for article_id, section_feed in waiting:
                if all(stored_story(served.get(f, b""), article_id) for f in ("all", section_feed)):
                    seen[article_id] = now

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
    time.sleep(0.2)  # the observer has found the stream's end

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

    def percentiles(times: dict[str, float]) -> tuple[list[float], float, float]:
        values = sorted((times[a] - t0) * 1000 for a, (t0, _) in posted.items() if a in times)
        return values, statistics.median(values), values[min(len(values) - 1, int(len(values) * 0.99))]

    latencies, p50, p99 = percentiles(seen)
    _, stored_p50, stored_p99 = percentiles(seen_stored)
    lost = count - len(latencies)
    achieved = count / (time.perf_counter() - start)
    print(f"{count} stories at {args.rate:.0f}/s over {args.seconds:.0f}s (posting took {count / achieved:.1f}s); "
          f"{lost} never seen")
    print(f"{'':<14}{'ms':>9}{'target':>9}{'ratio':>8}")
    for label, value, target in (("served p50", p50, 15.0), ("served p99", p99, 60.0)):
        verdict = "ok" if value <= target else "ABOVE TARGET"
        print(f"{label:<14}{value:>9.1f}{target:>9.0f}{value / target:>8.2f}  {verdict}")
    print(f"stored p50 {stored_p50:.1f} ms, p99 {stored_p99:.1f} ms (in Redis, before the API serves it)")
    print(f"max {latencies[-1]:.1f} ms, mean {statistics.fmean(latencies):.1f} ms")
    record(f"publish -> visible in feeds, p50 at {args.rate:.0f}/s", p50, "ms", target="<= 15 ms", met=p50 <= 15,
           note=f"{lost} never seen; stored in Redis p50 {stored_p50:.1f} ms")
    record(f"publish -> visible in feeds, p99 at {args.rate:.0f}/s", p99, "ms", target="<= 60 ms", met=p99 <= 60)


if __name__ == "__main__":
    main()
