"""The task base class: the shared policy every queue's tasks inherit.

It owns what Zulip's QueueProcessingWorker owns: logging, a receipt of what each
queue processed (operators and tests read it), and the dead-letter record for a
task that failed for good, so nothing is lost and ``syndicate dead-letters
requeue`` can put it back (Mailman's shunt queue).
"""

from __future__ import annotations

import json
import logging
import time
import traceback

import redis
from celery import Task

from syndicate import deadletters
from syndicate.store import get_redis, key

log = logging.getLogger("syndicate.workers")

# Errors that say "try again later": a network fault, or the store restarting or failing over.
# redis-py's ConnectionError and TimeoutError are not OSError, so OSError alone misses them.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError, redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError,
)

RECEIPTS_KEPT = 1000


class SyndicateTask(Task):
    abstract = True
    acks_late = True
    ignore_result = True
    # Set by each task: which queue it consumes, for receipts and dead letters.
    queue_name = "ingest"

    def record_receipt(self, subject: str) -> None:
        """Note that this queue handled ``subject`` (usually an event id)."""
        client = get_redis()
        with client.pipeline(transaction=False) as pipe:
            pipe.lpush(key("receipts", self.queue_name), json.dumps({"task": self.name, "subject": subject, "at": time.time()}))
            pipe.ltrim(key("receipts", self.queue_name), 0, RECEIPTS_KEPT - 1)
            pipe.execute()

    def on_failure(self, exc, task_id, args, kwargs, einfo):  # noqa: D401 - Celery hook
        log.error("task %s failed for good on %s: %s", self.name, args, exc)
        try:
            deadletters.record(
                self.queue_name, f"{type(exc).__name__}: {exc}", task=self.name, args=args, kwargs=kwargs,
                subject=str(args[0]) if args else None,
                traceback_text="".join(traceback.format_exception(exc)), task_id=task_id,
            )
        except Exception:  # the store itself may be what failed
            log.exception("could not record dead letter for %s", self.name)


def receipts(queue: str, count: int = 100) -> list[dict]:
    return [json.loads(x) for x in get_redis().lrange(key("receipts", queue), 0, count - 1)]


def dead_letters(count: int = 100) -> list[dict]:
    return deadletters.listing(count)
