"""Benchmark: an edition to 10,000 subscribers vs a plain smtplib loop, in the same run.

    SYNDICATE_REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/newsletter_send.py [--subscribers N]

Both send each subscriber a copy of the same rendered edition (text + HTML,
with the subscriber's own unsubscribe link) to the same local SMTP sink
(aiosmtpd in its own process). The baseline is the loop the issue names: a raw
smtplib loop over one reused connection that builds each message with the
email package (``EmailMessage``, the same headers, both parts with the link
substituted) and sends it. Syndicate (its edition rendered beforehand, as the
baseline's is) stamps each copy from pre-encoded bytes, claims recipients in
Redis, records "committing" and the outcome per recipient, and sends its
batches over SYNDICATE_SMTP_CONNECTIONS connections at once (1 by default).
The baseline runs before and after syndicate and its mean is used, so a
change in load hits both sides. Also
printed, for reference: a loop that only sends syndicate's finished bytes
(no building at all), the ceiling one connection reaches against this sink.
The ratio (syndicate / baseline emails per second) is the figure; the target
is at least 1.5.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import smtplib
import socket
from email.message import EmailMessage
from email.utils import formatdate
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
    from syndicate.newsletter.edition import UNSUBSCRIBE_PLACEHOLDER
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

        def wire_only(copies) -> float:
            # Syndicate's finished bytes, nothing built: what one connection can push to this sink.
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
        sender_value = content["list"].get("fromAddress") or settings.newsletter_from
        list_name, list_domain = content["list"]["name"], template.domain

        def baseline() -> float:
            # The raw peer: one smtplib connection, each message built with the email package
            # from the edition rendered once (the subscriber's link substituted into both parts).
            t0 = time.perf_counter()
            with smtplib.SMTP("127.0.0.1", port) as smtp:
                for address, sid in zip(readers, sids):
                    token = tokens.sign(settings.secret_key, tokens.UNSUBSCRIBE, list_id, sid)
                    url = f"{settings.public_url}/unsubscribe/{token}"
                    msg = EmailMessage()
                    msg["From"] = sender_value
                    msg["To"] = address
                    msg["Subject"] = content["subject"]
                    msg["Date"] = formatdate(content["issued_at"], usegmt=True)
                    msg["Message-ID"] = f"<{eid}.{sid}@{list_domain}>"
                    msg["List-Id"] = f"{list_name} <{list_id}.{list_domain}>"
                    msg["List-Unsubscribe"] = f"<{url}>, <mailto:unsubscribe@{list_domain}?subject=unsubscribe%20{token}>"
                    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
                    msg.set_content(content["text"].replace(UNSUBSCRIBE_PLACEHOLDER, url), cte="quoted-printable")
                    msg.add_alternative(content["html"].replace(UNSUBSCRIBE_PLACEHOLDER, url), subtype="html",
                                        cte="quoted-printable")
                    smtp.send_message(msg)
            return time.perf_counter() - t0

        # Baseline before and after, so a change in the machine's load hits both sides alike.
        before = baseline()
        wire = wire_only(copies)
        t0 = time.perf_counter()
        result = service.run_edition(eid)  # stamping, claims, commit marks, records, batches
        ours = time.perf_counter() - t0
        assert result["counts"]["sent"] == len(readers), result
        after = baseline()
        base = (before + after) / 2

        n = len(readers)
        size = len(copies[0].data)
        print(f"message size            {size / 1024:.1f} KiB")
        print(f"smtplib loop building each message (baseline) {n / base:8.0f} emails/s  "
              f"(mean of {before:.2f}s before and {after:.2f}s after, for {n})")
        print(f"smtplib loop sending finished bytes (reference) {n / wire:8.0f} emails/s")
        print(f"syndicate edition       {n / ours:8.0f} emails/s  ({ours:.2f}s for {n}, batches of "
              f"{settings.smtp_batch_size}, {settings.smtp_connections} connections)")
        print(f"ratio syndicate/baseline {base / ours:.2f}  (target >= 1.5)")
        report("edition emails", n / ours, "emails/s", "raw smtplib loop building each message", n / base,
               ">= 1.5x", base / ours >= 1.5, note=f"a loop sending finished bytes: {n / wire:,.0f} emails/s")
    finally:
        sink.stdin.close()
        sink.wait(10)
        delete_prefix(r, prefix)


if __name__ == "__main__":
    main()
