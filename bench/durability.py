"""What ``SYNDICATE_REDIS_APPENDFSYNC=always`` costs against the default ``everysec``.

    python bench/durability.py [--count 2000] [--threads 1,4]

Two embedded Redis servers (AOF on, one per fsync policy) in a data directory on
the same disk as ``var/`` (a tmpfs would hide the cost of fsync). For each, the
ingest path of one story is timed as the API runs it: store the article and log
its event in one MULTI/EXEC, then enqueue its fan-out on the broker (two
acknowledged writes). With ``always`` Redis fsyncs the AOF before it answers
each write; concurrent clients share one fsync per event-loop turn, so the
threaded runs show how much of the cost a busy API wins back.

Each policy runs in a child process of its own (the Celery app binds its broker
at import). Prints stories/s for each and the ratio always / everysec.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from results import record  # bench/ is on sys.path: run as bench/<name>.py

ROOT = Path(__file__).resolve().parents[1]


def measure(count: int, threads: int) -> float:
    """In the child: ingest ``count`` stories on ``threads`` threads; returns stories per second."""
    from syndicate import events
    from syndicate.workers.ingest import enqueue_fanout

    seed = json.loads((ROOT / "examples" / "articles" / "us-russia-military-talks.json").read_text())
    articles = [dict(seed, id=f"b-{uuid.uuid4().hex[:12]}") for _ in range(count)]

    def one(article: dict) -> None:
        enqueue_fanout(events.ingest(article).event_id or "")

    one(dict(seed, id=f"b-warm-{uuid.uuid4().hex[:8]}"))  # connections and scripts warmed up
    started = time.perf_counter()
    if threads == 1:
        for article in articles:
            one(article)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, articles))
    return count / (time.perf_counter() - started)


def run_child(url: str, count: int, threads: int) -> float:
    env = {**os.environ, "SYNDICATE_REDIS_URL": url, "SYNDICATE_REDIS_PREFIX": f"synbench:fsync:{uuid.uuid4().hex[:8]}:"}
    out = subprocess.run([sys.executable, __file__, "--child", "--count", str(count), "--threads", str(threads)],
                         env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--threads", default="1,4", help="comma-separated client thread counts")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(measure(args.count, int(args.threads)))
        return

    from syndicate.embedded import EmbeddedRedis

    (ROOT / "var").mkdir(exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="bench-durability-", dir=ROOT / "var"))
    servers = {policy: EmbeddedRedis(base / policy, appendfsync=policy).start() for policy in ("everysec", "always")}
    try:
        print(f"{args.count} stories each (commit + enqueue), AOF in {base} (same disk as var/)")
        for threads in (int(t) for t in args.threads.split(",")):
            rates = {policy: run_child(server.url, args.count, threads) for policy, server in servers.items()}
            print(f"  {threads} client thread(s): everysec {rates['everysec']:7.0f}/s   always {rates['always']:7.0f}/s"
                  f"   ratio always/everysec {rates['always'] / rates['everysec']:.2f}")
            record(f"ingest with appendfsync always, {threads} thread(s)", rates["always"], "stories/s",
                   "appendfsync everysec", rates["everysec"], note="the cost of SYNDICATE_REDIS_APPENDFSYNC=always")
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
