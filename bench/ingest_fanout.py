"""Ingest + fan-out throughput against raw Celery no-op tasks, same broker, same run.

    python bench/ingest_fanout.py [--count 500]

Each syndicate event is validated, stored with its event in one atomic step,
enqueued, and fanned out by a real prefork worker (c=2) to the channel queues
(which nobody consumes here: this measures ingest and fan-out alone). The
baseline enqueues the same number of no-op tasks to a no-op worker (c=2).

The two sides take turns in ``--rounds`` batches and each side's times are
summed, so a change in the machine's load during the run weighs on both alike.

The ingest path (validate, store, log, enqueue) is timed on its own as well, the
two sides alternating every few events: both sides publish to a queue no worker consumes, so the figure is what the path costs
its caller, not what the consumers running beside it take from the two cores (a
fan-out sends three messages where a no-op sends none; the end-to-end figure
counts that).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time

from kombu import Queue

from _common import ROOT, cleanup, setup_environment
from results import record  # bench/ is on sys.path: run as bench/<name>.py


# The ingest path alone alternates with its baseline every PATH_CHUNK events (a few milliseconds),
# so a burst of load from elsewhere on the machine falls on both sides alike.
PATH_CHUNK = 10


def start_worker(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=ROOT / "bench", env=dict(os.environ),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait(predicate, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("benchmark timed out; is a worker failing? run `syndicate worker` by hand to see")
        time.sleep(0.002)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pool", choices=("prefork", "threads"), default="prefork",
                        help="both sides' worker pool (`syndicate run` runs threads)")
    options = parser.parse_args()
    n, rounds = options.count, options.rounds
    _url, embedded = setup_environment("ingest")
    from syndicate import events
    from syndicate.schemas import validate_article
    from syndicate.store import get_redis, key

    client = get_redis()
    celery = [sys.executable, "-m", "celery"]
    procs = []
    try:
        # Baseline: raw Celery no-op tasks; syndicate: ingest + fan-out by a real worker on the ingest queue only.
        pool = ["-P", options.pool, "-c", "2"]
        procs.append(start_worker([*celery, "-A", "noop_app", "worker", *pool, "--without-gossip",
                                   "--without-mingle", "--loglevel", "WARNING"]))
        procs.append(start_worker([*celery, "-A", "syndicate.workers.app", "worker", "-Q", "ingest", *pool,
                                   "--without-gossip", "--without-mingle", "--loglevel", "WARNING"]))
        from noop_app import noop

        from syndicate.workers.ingest import enqueue_fanout

        prefix = os.environ["SYNDICATE_REDIS_PREFIX"]
        done = prefix + "noop-done"
        noop.apply_async()  # waits in the queue until the worker is up
        wait(lambda: client.get(done) is not None, 60)
        seed = json.loads((ROOT / "examples/articles/us-russia-military-talks.json").read_text())
        articles, alone = [], []
        for i in range(n):
            for name, into in (("bench", articles), ("bench-alone", alone)):
                article = copy.deepcopy(seed)
                article["id"] = f"{name}-{i}"
                into.append(article)
        idle = Queue("bench-unconsumed")  # a queue no worker reads: the ingest path timed alone
        warm = copy.deepcopy(seed)
        warm["id"] = "bench-warmup"
        enqueue_fanout(events.ingest(warm).event_id)
        wait(lambda: client.zcard(key("events:pending")) == 0, 60)

        enqueue_noop = baseline = enqueue_syn = syndicate = path_noop = path_syn = 0.0
        for r in range(rounds):
            part = slice(r * n // rounds, (r + 1) * n // rounds)
            batch = articles[part]
            mine = alone[part]
            for at in range(0, len(mine), PATH_CHUNK):
                start = time.perf_counter()
                for _ in mine[at:at + PATH_CHUNK]:
                    noop.apply_async(queue=idle)
                path_noop += time.perf_counter() - start
                start = time.perf_counter()
                for article in mine[at:at + PATH_CHUNK]:
                    validate_article(article)
                    result = events.ingest(article)
                    enqueue_fanout(result.event_id, idle)  # routed to nobody
                path_syn += time.perf_counter() - start
            # Those events stay unconsumed (the cleanup deletes their messages); out of pending so the
            # end-to-end half below waits for its own events only.
            client.delete(key("events:pending"))

            client.delete(done)
            start = time.perf_counter()
            for _ in batch:
                noop.apply_async()
            enqueue_noop += time.perf_counter() - start
            wait(lambda: int(client.get(done) or 0) >= len(batch))
            baseline += time.perf_counter() - start

            start = time.perf_counter()
            for article in batch:
                validate_article(article)
                result = events.ingest(article)
                enqueue_fanout(result.event_id)
            enqueue_syn += time.perf_counter() - start
            wait(lambda: client.zcard(key("events:pending")) == 0)
            syndicate += time.perf_counter() - start

        print(f"events: {n}")
        print(f"baseline  raw Celery no-op: enqueue {n / enqueue_noop:8.0f}/s   consumed {n / baseline:8.0f}/s")
        print(f"syndicate ingest+fan-out:   enqueue {n / enqueue_syn:8.0f}/s   fanned out {n / syndicate:8.0f}/s")
        print(f"ratio (syndicate / baseline, end to end): {baseline / syndicate:.2f}x")
        print(f"ratio (ingest path incl. validation / raw apply_async), consumers running: "
              f"{enqueue_noop / enqueue_syn:.2f}x")
        print(f"ingest path alone: {n / path_syn:8.0f}/s   raw apply_async alone: {n / path_noop:8.0f}/s   "
              f"ratio {path_noop / path_syn:.2f}x")
        record("ingest path (validate, store, log, enqueue)", n / path_syn, "events/s", "raw apply_async loop",
               n / path_noop, ">= 0.6x", path_noop / path_syn >= 0.6)
        record("ingest + fan-out consumed", n / syndicate, "events/s", "Celery no-op tasks consumed", n / baseline,
               ">= 0.5x", baseline / syndicate >= 0.5)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
        cleanup(embedded)


if __name__ == "__main__":
    main()
