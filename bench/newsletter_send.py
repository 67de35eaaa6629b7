"""Benchmark: an edition to 10,000 subscribers vs a plain smtplib loop, in the same run.

    SYNDICATE_REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/newsletter_send.py [--subscribers N]

Both send the same messages (each subscriber's own copy, with its own
unsubscribe link) to the same local SMTP sink (aiosmtpd in its own process).
The baseline reuses one connection and does nothing else; syndicate (its
edition built beforehand, as the baseline's copies are) stamps each copy,
claims recipients in Redis, records "committing" and the outcome per
recipient, and opens one connection per batch. The baseline runs before and
after syndicate and its mean is used, so a change in load hits both sides.
The ratio (syndicate / baseline emails per second) is the figure; the goal is
at least 0.8.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import smtplib
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from results import record as report  # bench/ is on sys.path: run as bench/<name>.py

ROOT = Path(__file__).resolve().parents[1]

SINK = """
import sys, time
from aiosmtpd.controller import Controller
class Handler:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"
c = Controller(Handler(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
print("ready", flush=True)
sys.stdin.read()
c.stop()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=10_000)
    args = parser.parse_args()
    port = free_port()
    prefix = f"synbench:{uuid.uuid4().hex[:8]}:"
    os.environ.setdefault("SYNDICATE_REDIS_URL", "redis://127.0.0.1:6379/0")
    os.environ.update({"SYNDICATE_REDIS_PREFIX": prefix, "SYNDICATE_SMTP_URL": f"smtp://127.0.0.1:{port}",
                       "SYNDICATE_SECRET_KEY": os.environ.get("SYNDICATE_SECRET_KEY", "bench-secret"),
                       "SYNDICATE_SMTP_RATE_PER_SECOND": "0"})
    sys.path.insert(0, str(ROOT))
    from syndicate import events
    from syndicate.config import get_settings
    from syndicate.newsletter import editions, lists, service, tokens
    from syndicate.newsletter.message import EditionMessage
    from syndicate.store import delete_prefix, get_redis

    sink = subprocess.Popen([sys.executable, "-c", SINK, str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert sink.stdout.readline().strip() == "ready"
    r = get_redis()
    try:
        list_id = "bench"
        lists.put_list({"id": list_id, "name": "Bench Edition", "schedule": "0 7 * * *", "timezone": "UTC"})
        readers = [f"reader{i}@bench.example" for i in range(args.subscribers)]
        t0 = time.perf_counter()
        lists.import_rows(list_id, [{"email": a} for a in readers])
        print(f"imported {len(readers)} subscribers in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        article = json.loads((ROOT / "examples/articles/us-russia-military-talks.json").read_text())
        article["datePublished"] = dt.datetime.now(dt.timezone.utc).isoformat()
        events.ingest(article)

        def baseline(copies) -> float:
            t0 = time.perf_counter()
            with smtplib.SMTP("127.0.0.1", port) as smtp:
                for copy in copies:
                    smtp.sendmail(copy.sender, [copy.recipient], copy.data)
            return time.perf_counter() - t0

        # The same copies syndicate will send: each subscriber's own unsubscribe link.
        eid = service.open_manual(list_id)
        record = editions.get_edition(eid)
        service._build(eid, record, r)
        content = json.loads(editions.get_edition(eid)["content"])
        settings = get_settings()
        template = EditionMessage(content["list"], eid, content["subject"], content["html"], content["text"],
                                  settings.newsletter_from, date=content["issued_at"])
        sids = r.hmget(f"{prefix}nl:sid-of:{list_id}", readers)
        copies = []
        for address, sid in zip(readers, sids):
            token = tokens.sign(settings.secret_key, tokens.UNSUBSCRIBE, list_id, sid)
            copies.append(template.copy_for(address, sid, f"{settings.public_url}/unsubscribe/{token}", token))

        # Baseline before and after, so a change in the machine's load hits both sides alike.
        before = baseline(copies)
        t0 = time.perf_counter()
        result = service.run_edition(eid)  # stamping, claims, commit marks, records, batches
        ours = time.perf_counter() - t0
        assert result["counts"]["sent"] == len(readers), result
        after = baseline(copies)
        base = (before + after) / 2

        n = len(readers)
        size = len(copies[0].data)
        print(f"message size            {size / 1024:.1f} KiB")
        print(f"smtplib loop (baseline) {n / base:8.0f} emails/s  (mean of {before:.2f}s before and {after:.2f}s after, for {n})")
        print(f"syndicate edition       {n / ours:8.0f} emails/s  ({ours:.2f}s for {n}, batches of {settings.smtp_batch_size})")
        print(f"ratio syndicate/baseline {base / ours:.2f}  (goal >= 0.80)")
        report("edition emails", n / ours, "emails/s", "raw smtplib loop building each message", n / base,
               ">= 1.5x", base / ours >= 1.5)
    finally:
        sink.stdin.close()
        sink.wait(10)
        delete_prefix(r, prefix)


if __name__ == "__main__":
    main()
