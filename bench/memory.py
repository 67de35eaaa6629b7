"""Redis memory as the archive grows: used_memory per stored story, with and without the body retention.

On a Redis of its own (embedded, AOF on), stories (the seed story under fresh ids,
over ten sections) go through the same domain functions the ingest and feeds
workers run: ``events.ingest`` (article and event in one transaction), fan-out
bookkeeping, ``feeds.index.sync_article`` per story and a render of every touched
feed after each batch (the feeds task renders after each story; the documents
stored are the same size). At each count, the archive is aged as 31 days would
age it (the event records' TTL runs out, every story's last change passes the
event retention) and ``used_memory`` is read before and after the retention task
(``syndicate.ingest.trim_bodies``); the bench process plays the worker, so its
RSS is the worker's.

Separately, the bytes a render of a 50-story feed appends to the AOF, compressed
documents (this release) against the uncompressed hash fields written before;
and daily editions to a list of N subscribers (``lists.import_rows``): each is
opened and built by the newsletter functions, each recipient's record written as
the sender writes it (one in a thousand refused; no SMTP), then finished and,
once past SYNDICATE_NEWSLETTER_COMPACT_AFTER_HOURS, compacted as the retention
task does (``editions.compact``).

Run:  .venv/bin/python bench/memory.py [--counts 2000,20000,200000] [--editions 30 --subscribers 100000]
      (defaults: --counts 2000,20000, 30 editions to 100,000: about 2 min; the issue's figures add 200000)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _common import ROOT
from results import record

SEED = ROOT / "examples" / "articles" / "us-russia-military-talks.json"
SECTIONS = [f"Section {n}" for n in range(10)]
BATCH = 500
DAY = 86400.0


def _start() -> object:
    from syndicate.embedded import EmbeddedRedis

    server = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="syndicate-bench-memory-"))).start()
    os.environ.update({
        "SYNDICATE_REDIS_URL": server.url,
        "SYNDICATE_REDIS_PREFIX": f"membench:{uuid.uuid4().hex[:6]}:",
        "SYNDICATE_DATA_DIR": tempfile.mkdtemp(prefix="syndicate-bench-data-"),
        "SYNDICATE_FEED_FILES": "false",
    })
    from syndicate.config import reset_settings

    reset_settings()
    return server


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak, in MB (Linux: KB)


def ingest(start: int, stop: int) -> None:
    """Stories ``start``..``stop``-1 through ingest, fan-out bookkeeping, the feed indexes and renders."""
    from syndicate import events
    from syndicate.config import get_settings
    from syndicate.feeds import index, service, state
    from syndicate.store import get_redis

    seed = json.loads(SEED.read_text())
    client = get_redis()
    size = get_settings().feed_size
    touched: set[str] = set()
    for n in range(start, stop):
        section = SECTIONS[n % len(SECTIONS)]
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_600_000_000 + n * 60))
        article = {**seed, "id": f"mem-{n:07d}", "section": section, "labels": [section],
                   "datePublished": when, "dateModified": when}
        result = events.ingest(article, client)
        events.mark_fanned_out(result.event_id or "", client=client)
        for feed_id in index.sync_article(client, article["id"], size):
            state.mark_changed(client, feed_id)
            touched.add(feed_id)
        if (n + 1) % BATCH == 0 or n + 1 == stop:
            for feed_id in sorted(touched):
                service.render_single_flight(feed_id)
            touched.clear()


def age_archive() -> None:
    """What 31 days do: every event record's TTL has run out, every story's last change is past retention."""
    from syndicate import retention
    from syndicate.store import get_redis, key

    client = get_redis()
    for name in client.scan_iter(match=key("event", "*"), count=1000):
        client.unlink(name)
    past = time.time() - 31 * DAY
    ids = client.zrange(retention.full_key(), 0, -1)
    for i in range(0, len(ids), 5000):
        client.zadd(retention.full_key(), {a: past for a in ids[i:i + 5000]}, xx=True)


def used_memory() -> int:
    from syndicate.store import get_redis

    client = get_redis()
    # UNLINK frees in the background: count only what is still held.
    while int(client.info("memory").get("lazyfree_pending_objects", 0)):
        time.sleep(0.05)
    client.execute_command("MEMORY", "PURGE")
    return int(client.info("memory")["used_memory"])


def distinct(article: dict, n: int) -> dict:
    """The story with its body's words shuffled (seeded by ``n``): stories that differ as real ones do,
    so gzip cannot just point back at the previous copy of the same text."""
    import random

    rng = random.Random(n)
    blocks = []
    for block in article["body"]["blocks"]:
        words = block["text"].split()
        rng.shuffle(words)
        blocks.append({**block, "text": " ".join(words)})
    return {**article, "body": {**article["body"], "blocks": blocks}}


def render_aof_bytes(vary: bool, renders: int = 20) -> tuple[float, float]:
    """(AOF bytes per render now, AOF bytes per render writing the documents uncompressed as before)."""
    from syndicate import events
    from syndicate.feeds import service, state
    from syndicate.feeds.model import FORMATS
    from syndicate.store import get_redis, key

    client = get_redis()
    seed = json.loads(SEED.read_text())
    section = f"AOF {'distinct' if vary else 'seed'}"
    tag = section.split()[1]
    for n in range(50):
        when = f"2040-01-01T00:{n:02d}:00Z"
        story = distinct(seed, n) if vary else seed
        events.ingest({**story, "id": f"aof-{tag}-{n:02d}", "section": section, "labels": [section],
                       "datePublished": when, "dateModified": when})
    feed_id = f"sections/aof-{tag}"
    service.rebuild([feed_id])

    def aof() -> int:
        return int(client.info("persistence")["aof_current_size"])

    def changed(n: int) -> None:  # one story updated: each render has something new to store
        when = "2040-01-01T00:49:00Z"
        story = distinct(seed, 49) if vary else seed
        events.ingest({**story, "id": f"aof-{tag}-49", "version": n + 2, "headline": f"{seed['headline']} ({n})",
                       "section": section, "labels": [section], "datePublished": when, "dateModified": when})
        from syndicate.feeds import index

        index.sync_article(client, f"aof-{tag}-49", 50)
        state.mark_changed(client, feed_id)

    now_bytes = 0
    for n in range(renders):
        changed(n)
        before = aof()
        service.render_single_flight(feed_id)
        now_bytes += aof() - before
    plain_bytes = 0
    for n in range(renders, 2 * renders):
        changed(n)
        rendered = service.render_now(feed_id)
        fields: dict[str, object] = {"updated": rendered.updated.isoformat(), "items": len(rendered.item_ids)}
        for fmt, doc in rendered.documents.items():
            fields.update({fmt: doc.body, f"{fmt}:etag": doc.etag, f"{fmt}:lm": doc.last_modified})
        before = aof()
        client.hset(key("feeds", "doc", f"plain-{tag}"), mapping=fields)  # what each render stored before
        plain_bytes += aof() - before
    assert set(FORMATS) <= set(rendered.documents)
    return now_bytes / renders, plain_bytes / renders


def editions_memory(count: int, subscribers: int) -> None:
    """used_memory after ``count`` daily editions to ``subscribers``, kept whole and compacted."""
    from syndicate.newsletter import editions, lists
    from syndicate.store import get_redis

    client = get_redis()
    list_id = "memory"
    lists.put_list({"id": list_id, "name": "Memory", "schedule": "0 7 * * *", "timezone": "UTC",
                    "fromAddress": "Desk <desk@example.com>"})
    started = time.monotonic()
    lists.import_rows(list_id, ({"email": f"reader{n:07d}@example.com"} for n in range(subscribers)))
    print(f"{subscribers:,} subscribers imported in {time.monotonic() - started:,.0f} s", flush=True)
    base = used_memory()
    eids = []
    for day in range(count):
        eid = f"{list_id}.bench{day:03d}"
        editions.open_edition(eid, list_id, f"slot{day}", "manual", float(day))
        editions.finish_build(eid, list_id, {"subject": "s", "stories": []}, [])
        rcpt = client.zrange(editions.ed_key(eid, "rcpt"), 0, -1)
        for i in range(0, len(rcpt), 5000):
            with client.pipeline(transaction=False) as pipe:
                for n, address in enumerate(rcpt[i:i + 5000], start=i):
                    status = "refused" if n % 1000 == 999 else "sent"
                    pipe.hset(editions.ed_key(eid, "status"), address,
                              f"{status}:{time.time():.3f}:250 2.0.0 Ok: queued as {n:08X}")
                pipe.execute()
        editions.finish(eid, 90)
        eids.append(eid)
    whole = used_memory() - base
    for eid in eids:
        editions.compact(eid)
    compacted = used_memory() - base
    print(f"{count} editions to {subscribers:,} (one in a thousand refused): {whole / 2**20:,.1f} MB kept whole, "
          f"{compacted / 2**20:,.1f} MB compacted", flush=True)
    record(f"used_memory of {count} sent editions to {subscribers:,}", compacted / 2**20, "MB",
           "kept whole", whole / 2**20, note="lower is better")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="2000,20000", help="archive sizes to measure at, comma-separated "
                                                               "(the issue's figures: 2000,20000,200000)")
    parser.add_argument("--editions", type=int, default=30, help="daily editions to measure (0: none)")
    parser.add_argument("--subscribers", type=int, default=100_000, help="subscribers of the editions' list")
    args = parser.parse_args()
    counts = sorted(int(c) for c in args.counts.split(",") if c)
    server = _start()
    try:
        from syndicate import retention

        for vary, what in ((False, "the seed story 50 times"), (True, "50 distinct stories")):
            per_render, per_render_plain = render_aof_bytes(vary)
            record(f"AOF bytes per render of a 50-story feed ({what})", per_render / 1024, "KB",
                   "uncompressed documents", per_render_plain / 1024, note="lower is better")
        age_archive()  # the AOF measurement's event records: expired, as every later count's are
        base = used_memory()
        done = 0
        previous = None
        for count in counts:
            started = time.monotonic()
            ingest(done, count)
            done = count
            whole = used_memory()
            age_archive()
            aged = used_memory()
            trim_started = time.monotonic()
            trimmed = retention.trim_bodies()
            trim_seconds = time.monotonic() - trim_started
            after = used_memory()
            print(f"{count:>8,} stories: used_memory {whole / 2**20:,.1f} MB as ingested, {aged / 2**20:,.1f} MB "
                  f"once the events expired, {after / 2**20:,.1f} MB after the retention "
                  f"({trimmed['trimmed']:,} trimmed, {trimmed['kept']:,} kept whole, in {trim_seconds:,.0f} s); "
                  f"bench (worker) RSS "
                  f"{rss_mb():,.0f} MB; {time.monotonic() - started:,.0f} s", flush=True)
            record(f"used_memory per story at {count:,} stories", (after - base) / count, "bytes",
                   "without the retention", (aged - base) / count, note="lower is better")
            if previous is not None:
                grown = (after - previous[1]) / (count - previous[0])
                print(f"         growth from {previous[0]:,}: {grown:,.0f} bytes per story", flush=True)
            previous = (count, after)
        if counts:
            record("bench (worker) peak RSS", rss_mb(), "MB", note=f"after {counts[-1]:,} stories")
        if args.editions:
            editions_memory(args.editions, args.subscribers)
            record("bench (worker) peak RSS after the editions", rss_mb(), "MB")
    finally:
        server.stop()  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())
