"""Redis memory and worker RSS as the archive grows, with and without the body retention.

On a Redis of its own (embedded, AOF on), a real worker (``syndicate worker -Q
ingest,feeds,newsletter,webhooks -P threads -c 4``, one process as ``syndicate run`` starts
its workers; ``--pool prefork``: ``-c 2``, the main process and its two pool processes) does
what it does in production: fan-out, the feed indexes and single-flight renders
of every touched feed, and the retention task. The bench process plays the API:
each story (the seed story under fresh ids, over ten sections) is stored with
its event (``events.ingest``) and handed to the ingest queue
(``enqueue_fanout``), as ``POST /v1/articles`` does after validating it. At each
count, once the worker is idle, the archive is aged as 31 days would age it (the
event records' TTL runs out, every story's last change passes the event
retention) and ``used_memory`` is read before and after the retention task
(``syndicate.ingest.trim_bodies``, sent to the worker as beat sends it). Worker
RSS is read from /proc (VmRSS of the worker process and of each pool process).

At the end, what each per-story structure costs: a trimmed ``article:{id}`` hash
(``MEMORY USAGE``, ``OBJECT ENCODING``), the ``articles`` index, the ``events``
stream (capped at events.EVENT_LOG_MAXLEN) and ``articles:full``.

Separately, the bytes a render of a 50-story feed appends to the AOF, compressed
documents (this release) against the uncompressed hash fields written before
(in the bench process); one edition to a list of ``--smtp-subscribers`` sent by
the worker through a real SMTP server on loopback (aiosmtpd, counting what it
receives); and daily editions to a list of N subscribers (``lists.import_rows``):
each is opened and built by the newsletter functions, each recipient's record
written as the sender writes it (one in a thousand refused; no SMTP), then
finished and, once past SYNDICATE_NEWSLETTER_COMPACT_AFTER_HOURS, compacted as
the retention task does (``editions.compact``).

Run:  .venv/bin/python bench/memory.py [--counts 2000,20000,200000] [--editions 30 --subscribers 100000]
      (defaults: --counts 2000,20000, 30 editions to 100,000: about 15 min on 2 cores, the worker taking
      about 90 stories a second; 200000 adds about 35 min)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
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
AHEAD = 2000  # stories handed to the worker and not yet through its feeds: the bench waits beyond this
DAY = 86400.0


def _start() -> object:
    from syndicate.embedded import EmbeddedRedis

    server = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="syndicate-bench-memory-"))).start()
    os.environ.update({
        "SYNDICATE_REDIS_URL": server.url,
        "SYNDICATE_REDIS_PREFIX": f"membench:{uuid.uuid4().hex[:6]}:",
        "SYNDICATE_DATA_DIR": tempfile.mkdtemp(prefix="syndicate-bench-data-"),
        "SYNDICATE_FEED_FILES": "false",
        # One retention run works through the whole backlog (production slices it over hourly runs).
        "SYNDICATE_TASK_TIME_LIMIT": "7200",
        "SYNDICATE_SECRET_KEY": uuid.uuid4().hex,  # signs the edition's unsubscribe links
    })
    from syndicate.config import reset_settings

    reset_settings()
    return server


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak, in MB (Linux: KB)


def start_worker(smtp_url: str, pool: str) -> subprocess.Popen:
    """The real worker, on this bench's Redis, logging warnings to a file beside its data."""
    syndicate = Path(sys.executable).with_name("syndicate")
    log = open(Path(os.environ["SYNDICATE_DATA_DIR"]) / "worker.log", "ab")
    env = {**os.environ, "SYNDICATE_SMTP_URL": smtp_url}
    concurrency = "4" if pool == "threads" else "2"
    return subprocess.Popen([str(syndicate), "worker", "-Q", "ingest,feeds,newsletter,webhooks", "-P", pool,
                             "-c", concurrency, "--loglevel", "WARNING"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)


def _vm_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def worker_rss(worker: subprocess.Popen) -> tuple[float, list[float]]:
    """(main process MB, [each pool process MB]) from /proc."""
    children = []
    for task in Path(f"/proc/{worker.pid}/task").iterdir():
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return _vm_rss_mb(worker.pid), sorted(_vm_rss_mb(c) for c in children)


def rss_text(worker: subprocess.Popen) -> str:
    main, pool = worker_rss(worker)
    if not pool:
        return f"worker RSS {main:,.0f} MB"
    return f"worker RSS {main:,.0f} MB main + {' + '.join(f'{p:,.0f}' for p in pool)} MB pool"


def _behind(client) -> int:
    from syndicate import events
    from syndicate.queues import queue_depths
    from syndicate.store import key

    owed = events.owed_counts(("feeds", "newsletter"), client)
    return client.zcard(key("events:pending")) + sum(owed.values()) + sum(queue_depths().values())


def _feeds_current(client) -> bool:
    from syndicate.feeds import index, state

    for feed_id in index.feed_ids(client):
        rendered = client.hget(state.doc_key(feed_id), "gen")
        if client.exists(state.lock_key(feed_id)) or str(state.current_gen(client, feed_id)) != (rendered or "0"):
            return False
    return True


def wait_idle(client, worker: subprocess.Popen, limit: int = 0, timeout: float = 3600) -> None:
    """Until at most ``limit`` stories wait for the worker (0: every feed rendered from the last change too)."""
    deadline = time.monotonic() + timeout
    while _behind(client) > limit or (limit == 0 and not _feeds_current(client)):
        if worker.poll() is not None:
            raise SystemExit(f"the worker exited ({worker.returncode}); see {os.environ['SYNDICATE_DATA_DIR']}/worker.log")
        if time.monotonic() > deadline:
            raise SystemExit(f"the worker did not catch up ({_behind(client)} behind); see "
                             f"{os.environ['SYNDICATE_DATA_DIR']}/worker.log")
        time.sleep(0.2)


def ingest(start: int, stop: int, worker: subprocess.Popen) -> None:
    """Stories ``start``..``stop``-1 stored and handed to the worker, as the API does; returns once it is idle."""
    from syndicate import events
    from syndicate.store import get_redis
    from syndicate.workers.ingest import enqueue_fanout

    seed = json.loads(SEED.read_text())
    client = get_redis()
    for n in range(start, stop):
        section = SECTIONS[n % len(SECTIONS)]
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_600_000_000 + n * 60))
        article = {**seed, "id": f"mem-{n:07d}", "section": section, "labels": [section],
                   "datePublished": when, "dateModified": when}
        enqueue_fanout(events.ingest(article, client).event_id or "")
        if (n + 1) % BATCH == 0:
            wait_idle(client, worker, limit=AHEAD)
    wait_idle(client, worker)


def run_retention(worker: subprocess.Popen) -> dict[str, int]:
    """The retention task, sent to the worker as beat sends it; its counts once it finished."""
    from syndicate.store import get_redis, key
    from syndicate.workers.app import app

    client = get_redis()
    client.delete(key("retention", "last"))
    app.send_task("syndicate.ingest.trim_bodies")
    deadline = time.monotonic() + 3600
    while not client.hget(key("retention", "last"), "at"):
        if worker.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the retention task did not finish; see worker.log in the data directory")
        time.sleep(0.2)
    return {k: int(v) for k, v in client.hgetall(key("retention", "last")).items() if k != "at"}


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
        result = events.ingest({**story, "id": f"aof-{tag}-{n:02d}", "section": section, "labels": [section],
                                "datePublished": when, "dateModified": when})
        events.mark_fanned_out(result.event_id or "")  # rendered here, not by the worker
    feed_id = f"sections/aof-{tag}"
    service.rebuild([feed_id])

    def aof() -> int:
        return int(client.info("persistence")["aof_current_size"])

    def changed(n: int) -> None:  # one story updated: each render has something new to store
        when = "2040-01-01T00:49:00Z"
        story = distinct(seed, 49) if vary else seed
        result = events.ingest({**story, "id": f"aof-{tag}-49", "version": n + 2,
                                "headline": f"{seed['headline']} ({n})", "section": section, "labels": [section],
                                "datePublished": when, "dateModified": when})
        events.mark_fanned_out(result.event_id or "")
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
    service.render_single_flight(feed_id)  # the stored documents catch up with the last change
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


def smtp_edition(subscribers: int, worker: subprocess.Popen, received: list[int]) -> None:
    """An edition of the newest stories to ``subscribers``, sent by the worker through the loopback SMTP sink."""
    from syndicate.newsletter import editions, lists, service
    from syndicate.store import get_redis, key

    list_id = "smtp"
    lists.put_list({"id": list_id, "name": "SMTP", "schedule": "0 7 * * *", "timezone": "UTC",
                    "fromAddress": "Desk <desk@example.com>"})
    lists.import_rows(list_id, ({"email": f"smtp{n:07d}@example.com"} for n in range(subscribers)))
    client = get_redis()
    for article_id in client.zrevrange(key("articles"), 0, 4):  # in the main window: stored whole
        editions.stage(list_id, article_id, "bench")
    before = worker_rss(worker)
    eid = service.open_manual(list_id)
    from syndicate.workers.app import app

    app.send_task("syndicate.newsletter.send_edition", args=[eid])
    started = time.monotonic()
    while editions.get_edition(eid, client).get("state") not in ("sent", "failed", "skipped"):
        if worker.poll() is not None or time.monotonic() - started > 1800:
            raise SystemExit("the edition was not sent; see worker.log in the data directory")
        time.sleep(0.2)
    state = editions.get_edition(eid, client)["state"]
    print(f"an edition to {subscribers:,} through SMTP on loopback: {state} in {time.monotonic() - started:,.0f} s, "
          f"{received[0]:,} messages received; {rss_text(worker)} (before: "
          f"{' + '.join(f'{x:,.0f}' for x in [before[0], *before[1]])} MB)", flush=True)


def smtp_sink() -> tuple[object, str, list[int]]:
    """A real SMTP server on loopback that counts what it accepts: (controller, smtp URL, [count])."""
    from aiosmtpd.controller import Controller

    received = [0]

    class Count:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
            received[0] += len(envelope.rcpt_tos)
            return "250 OK"

    with socket.socket() as probe:  # a free loopback port (aiosmtpd checks its server by connecting to it)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Count(), hostname="127.0.0.1", port=port)
    controller.start()
    return controller, f"smtp://127.0.0.1:{port}", received


def per_story_structures() -> None:
    """What each structure kept per story costs once the retention ran, and which are capped."""
    from syndicate import events, retention
    from syndicate.store import get_redis, key

    client = get_redis()
    trimmed = next((n for n in client.scan_iter(match=key("article", "mem-*"), count=1000)
                    if client.hexists(n, "trimmed_at")), None)
    if trimmed:
        print(f"a trimmed {trimmed.split(':', 2)[-1]}: MEMORY USAGE {client.memory_usage(trimmed, samples=0):,} "
              f"bytes, {client.object('encoding', trimmed)}, record {client.hstrlen(trimmed, 'json')} bytes of JSON",
              flush=True)
    for name, what, cap in (
            (key("articles"), "zset", "one entry per live story: grows with the archive"),
            (key("events"), "stream", f"capped at about {events.EVENT_LOG_MAXLEN:,} entries"),
            (retention.full_key(), "zset", "stories stored whole only: bounded by the retention and the windows")):
        length = client.zcard(name) if what == "zset" else client.xlen(name)
        usage = client.memory_usage(name, samples=0) or 0
        print(f"{name.split(':', 2)[-1]:>14} ({what}): {length:,} entries, {usage / 2**20:,.1f} MB, "
              f"{usage / max(length, 1):,.0f} bytes each; {cap}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="2000,20000", help="archive sizes to measure at, comma-separated "
                                                               "(the issue's figures: 2000,20000,200000)")
    parser.add_argument("--pool", choices=("threads", "prefork"), default="threads",
                        help="the worker's pool: threads (-c 4, as `syndicate run` starts it) or prefork (-c 2)")
    parser.add_argument("--editions", type=int, default=30, help="daily editions to measure (0: none)")
    parser.add_argument("--subscribers", type=int, default=100_000, help="subscribers of the editions' list")
    parser.add_argument("--smtp-subscribers", type=int, default=2_000,
                        help="subscribers of the edition sent through SMTP on loopback (0: none)")
    args = parser.parse_args()
    counts = sorted(int(c) for c in args.counts.split(",") if c)
    server = _start()
    sink, smtp_url, received = smtp_sink()
    worker = None
    try:
        from syndicate.store import get_redis

        for vary, what in ((False, "the seed story 50 times"), (True, "50 distinct stories")):
            per_render, per_render_plain = render_aof_bytes(vary)
            record(f"AOF bytes per render of a 50-story feed ({what})", per_render / 1024, "KB",
                   "uncompressed documents", per_render_plain / 1024, note="lower is better")
        worker = start_worker(smtp_url, args.pool)  # after the AOF figures: its own writes would count in them
        age_archive()  # the AOF measurement's event records: expired, as every later count's are
        wait_idle(get_redis(), worker)
        while args.pool == "prefork" and len(worker_rss(worker)[1]) < 2 and worker.poll() is None:
            time.sleep(0.2)  # the pool forks once the worker is up
        print(f"worker up: {rss_text(worker)}", flush=True)
        base = used_memory()
        done = 0
        previous = None
        for count in counts:
            started = time.monotonic()
            ingest(done, count, worker)
            done = count
            whole = used_memory()
            ingest_seconds = time.monotonic() - started
            age_archive()
            aged = used_memory()
            trim_started = time.monotonic()
            trimmed = run_retention(worker)
            trim_seconds = time.monotonic() - trim_started
            after = used_memory()
            print(f"{count:>8,} stories: used_memory {whole / 2**20:,.1f} MB as ingested, {aged / 2**20:,.1f} MB "
                  f"once the events expired, {after / 2**20:,.1f} MB after the retention "
                  f"({trimmed['trimmed']:,} trimmed, {trimmed['kept']:,} kept whole, in {trim_seconds:,.0f} s); "
                  f"{rss_text(worker)}; ingest {ingest_seconds:,.0f} s", flush=True)
            record(f"used_memory per story at {count:,} stories", (after - base) / count, "bytes",
                   "without the retention", (aged - base) / count, note="lower is better")
            if previous is not None:
                grown = (after - previous[1]) / (count - previous[0])
                print(f"         growth from {previous[0]:,}: {grown:,.0f} bytes per story", flush=True)
            previous = (count, after)
        if counts:
            per_story_structures()
            main_rss, pool = worker_rss(worker)
            record("worker RSS (main + pool processes)" if pool else "worker RSS (one process, threads)",
                   main_rss + sum(pool), "MB",
                   note=f"after {counts[-1]:,} stories")
        if args.smtp_subscribers:
            smtp_edition(args.smtp_subscribers, worker, received)
        if args.editions:
            editions_memory(args.editions, args.subscribers)
            record("bench process peak RSS after the editions", rss_mb(), "MB")
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                worker.kill()
        sink.stop()  # type: ignore[attr-defined]
        server.stop()  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())
