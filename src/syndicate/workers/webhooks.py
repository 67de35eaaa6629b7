"""Tasks of the ``webhooks`` queue: dispatch events to partners, attempt deliveries, drain retries.

Attempts run on a thread pool owned by each worker process, not in the Celery
task itself: a partner that hangs until its read timeout then holds one
thread, never a worker slot, and at most ``SYNDICATE_WEBHOOK_PARTNER_CONCURRENCY``
threads per partner, so other partners (and other queues) keep flowing. A task
hands its deliveries to the pool and returns; the delivery's lease in the Redis
schedule covers the attempt, so if this process dies mid-attempt the drain
picks the delivery up again once the lease runs out.

On a warm shutdown (SIGTERM to the worker, as ``syndicate run`` and docker
send) a prefork child leaves through ``os._exit`` right after its last task,
which would cut the attempt threads short: ``worker_process_shutdown`` (and
``worker_shutdown`` for the solo/threads pools) first waits for the attempts in
flight, at most one attempt's own time limit. Whatever is still running after
that (or when the process is killed outright) is left to the lease: the drain
attempts it again with the same webhook-id, and the claim makes sure only one
outcome is ever recorded per attempt.

Retries never use Celery countdown/ETA (the Redis broker redelivers unacked ETA
tasks after its visibility timeout): they wait in the ``webhooks:schedule``
sorted set, which the beat task ``syndicate.webhooks.drain`` reads every second.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from celery import signals
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from syndicate import deadletters
from syndicate.config import get_settings
from syndicate.webhooks import deliveries, service

from .app import app
from .base import TRANSIENT_ERRORS, SyndicateTask

log = logging.getLogger("syndicate.workers.webhooks")

BEAT_SCHEDULE = {
    "webhooks-drain": {"task": "syndicate.webhooks.drain", "schedule": 1.0},
    "webhooks-prune": {"task": "syndicate.webhooks.prune", "schedule": 3600.0},
}
# Also here, not only in app.py: imported before app.py, this module is half-loaded when app.py
# collects the schedules, and its entries would be missing.
app.conf.beat_schedule.update(BEAT_SCHEDULE)

# A partner over its in-flight limit is looked at again this much later.
DEFER_SECONDS = 1.0


class _Attempts:
    """The per-process pool of attempt threads with a per-partner in-flight limit."""

    def __init__(self, threads: int, per_partner: int) -> None:
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="webhook")
        self.slots = threading.BoundedSemaphore(threads)
        self.per_partner = per_partner
        self.inflight: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()

    def submit(self, delivery_id: str, partner: str, ctx: service.Context) -> bool:
        """Start an attempt; False when the partner already has its share in flight (deferred instead)."""
        with self.lock:
            if self.inflight[partner] >= self.per_partner:
                busy = True
            else:
                busy = False
                self.inflight[partner] += 1
        if busy:
            deliveries.defer(delivery_id, time.time() + DEFER_SECONDS)
            return False
        # Blocks only when every thread is busy: back-pressure on the task, not an unbounded queue.
        self.slots.acquire()
        self.pool.submit(self._run, delivery_id, partner, ctx)
        return True

    def inflight_count(self) -> int:
        with self.lock:
            return sum(self.inflight.values())

    def close(self, timeout: float) -> int:
        """Stop taking attempts and wait up to ``timeout`` s for those in flight; returns how many were left."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + timeout
        while self.inflight_count() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.inflight_count()

    def _run(self, delivery_id: str, partner: str, ctx: service.Context) -> None:
        try:
            # Redis restarting is waited out here (redis-py's Retry, about 25 s at most) rather than
            # left to the lease, which would hold the delivery for a minute or more. Repeating the
            # attempt is safe: the claim refuses a delivery whose lease is live or that is settled.
            Retry(ExponentialBackoff(cap=2.0, base=0.1), 15).call_with_retry(
                lambda: service.attempt(delivery_id, ctx, partner_name=partner),
                lambda error: log.warning("attempt of %s waits for the store: %s", delivery_id, error))
        except Exception:  # the lease brings it back; log why this attempt died
            log.exception("attempt of %s to %s failed unexpectedly", delivery_id, partner)
        finally:
            with self.lock:
                self.inflight[partner] -= 1
                if self.inflight[partner] <= 0:
                    del self.inflight[partner]
            self.slots.release()


_pools: dict[int, _Attempts] = {}
_pools_lock = threading.Lock()


def attempts_pool() -> _Attempts:
    pid = os.getpid()  # a forked prefork child builds its own pool
    pool = _pools.get(pid)
    if pool is None:
        with _pools_lock:
            pool = _pools.get(pid)
            if pool is None:
                settings = get_settings()
                pool = _pools[pid] = _Attempts(settings.webhook_worker_threads, settings.webhook_partner_concurrency)
    return pool


@signals.worker_process_shutdown.connect
@signals.worker_shutdown.connect
def finish_attempts_on_shutdown(**_kwargs: object) -> None:
    """Warm shutdown: let this process's attempts in flight finish before it exits."""
    pool = _pools.pop(os.getpid(), None)
    if pool is None:
        return
    waiting = pool.inflight_count()
    if waiting:
        settings = get_settings()
        limit = settings.webhook_connect_timeout + settings.webhook_read_timeout + 5
        log.warning("shutting down: waiting up to %.0fs for %d webhook attempt(s) in flight", limit, waiting)
        left = pool.close(limit)
        if left:
            log.warning("shutting down with %d webhook attempt(s) unfinished; the lease brings them back", left)
        else:
            log.warning("webhook attempts in flight finished; exiting")
    else:
        pool.close(0)


@app.task(name="syndicate.webhooks.dispatch_event", base=SyndicateTask, queue_name="webhooks", bind=True)
def dispatch_event(self, event_id: str) -> None:
    """One delivery per matching partner (idempotent per event), first attempts started at once.

    An event whose body cannot be built is dead-lettered (requeue redoes this
    task) and acknowledged, so it never holds the events behind it.
    """
    ctx = service.context()
    pool = attempts_pool()
    try:
        due = service.dispatch(event_id, ctx)
    except service.Unbuildable as exc:
        log.error("webhooks: skipping event %s: %s", event_id, exc)
        deadletters.record("webhooks", str(exc), task=self.name, args=[event_id], article_id=exc.article_id,
                           subject=event_id)
        due = exc.due
    for delivery_id, partner in due:
        pool.submit(delivery_id, partner, ctx)
    self.record_receipt(event_id)


@app.task(name="syndicate.webhooks.deliver", base=SyndicateTask, queue_name="webhooks", bind=True)
def deliver(self, delivery_id: str) -> None:
    """Attempt one delivery now (a due retry, a resend); a finished or busy delivery is left alone."""
    record = deliveries.get(delivery_id)
    if record is None or record.get("status") != "pending":
        # Settled, or expired with the retention: the drain must not keep taking it.
        deliveries.discard_if_settled(delivery_id)
        return
    attempts_pool().submit(delivery_id, record.get("partner", ""), service.context())


@app.task(name="syndicate.webhooks.drain", base=SyndicateTask, queue_name="webhooks", bind=True)
def drain(self) -> int:
    """Beat, every second: hand each due delivery of the Redis schedule to a deliver task.

    Not retried and never dead-lettered when Redis is unreachable: the next
    tick a second later is the retry, and the schedule lost nothing.
    """
    try:
        due = service.drain(service.context())
        for delivery_id in due:
            deliver.apply_async(args=[delivery_id])
    except TRANSIENT_ERRORS as exc:
        # Deliveries taken but not handed on are leased in the schedule: it brings them back.
        log.warning("webhooks drain: the store or broker is unreachable (%s); the next tick retries", exc)
        return 0
    return len(due)


@app.task(name="syndicate.webhooks.prune", base=SyndicateTask, queue_name="webhooks", bind=True)
def prune(self) -> int:
    """Beat, hourly: trim the delivery indexes to the retention (records expire on their own)."""
    return service.prune(service.context())


def enqueue_deliver(delivery_id: str) -> None:
    """For the API and CLI: attempt a delivery soon (the schedule catches it if the broker is down)."""
    deliver.apply_async(args=[delivery_id])


def enqueue_deliveries(delivery_ids: list[str]) -> None:
    """For the API and the console: attempt each delivery soon, never raising. A delivery that
    cannot be enqueued (the broker away) is still due in the store's schedule, and the drain sends it."""
    for delivery_id in delivery_ids:
        try:
            enqueue_deliver(delivery_id)
        except Exception:  # noqa: BLE001 - see above: the schedule holds it
            pass
