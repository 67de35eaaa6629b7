"""The task base class: the shared policy every queue's tasks inherit.

It owns what Zulip's QueueProcessingWorker owns: logging, a receipt of what each
queue processed (operators and tests read it), the retry policy for transient
errors, and the dead-letter record for a task that failed for good, so nothing is
lost and ``syndicate dead-letters requeue`` can put it back (Mailman's shunt queue).

A channel task's receipt also settles what the fan-out recorded the channel owes
for the event (``syndicate.events``); so does its dead letter, which is then the
record of that event on that channel. The reconciler re-dispatches the rest.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
import traceback

import kombu.exceptions
import redis
from celery import Task

from syndicate import deadletters, events
from syndicate.config import get_settings
from syndicate.store import get_redis, key

log = logging.getLogger("syndicate.workers")

# Errors that say "try again later": a network fault, or the store restarting or failing over.
# redis-py's ConnectionError and TimeoutError are not OSError, so OSError alone misses them;
# kombu's OperationalError is what a publish raises once it gave up reaching the broker.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError, redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, kombu.exceptions.OperationalError,
)

RECEIPTS_KEPT = 1000


def max_countdown() -> float:
    """The longest retry wait: at most 60 s, and at most half the visibility timeout."""
    return min(60.0, get_settings().visibility_timeout / 2)


# The task each channel runs for one event (its queue is the channel's name): what the fan-out
# sends and the reconciler re-sends when the channel has no receipt for the event.
CHANNEL_TASKS = {
    "feeds": "syndicate.feeds.apply_event",
    "webhooks": "syndicate.webhooks.dispatch_event",
    "newsletter": "syndicate.newsletter.stage_event",
}


class SyndicateTask(Task):
    abstract = True
    acks_late = True
    ignore_result = True
    # Set by each task: which queue it consumes, for receipts and dead letters.
    queue_name = "ingest"
    # The default retry policy (Celery reads these from the class when the decorator leaves
    # them out): transient errors are retried with exponential backoff and jitter, waiting
    # at most 30 s; ``retry`` caps every task's wait below the visibility timeout.
    autoretry_for = TRANSIENT_ERRORS
    retry_backoff = True
    retry_backoff_max = 30
    retry_jitter = True
    max_retries = 5

    def retry(self, *args, countdown=None, eta=None, **kwargs):
        """Celery's retry, with the wait capped well below the broker's visibility timeout.

        A countdown message sits unacknowledged in a worker until it is due; past the
        visibility timeout the broker hands it out a second time, and the task runs twice.
        A task's own (longer) backoff is cut to the cap here, whatever its decorator says.
        """
        cap = max_countdown()
        if countdown is not None and countdown > cap:
            countdown = cap
        if eta is not None and (eta - datetime.datetime.now(eta.tzinfo)).total_seconds() > cap:
            eta = None
            countdown = cap
        return super().retry(*args, countdown=countdown, eta=eta, **kwargs)

    def record_receipt(self, subject: str) -> None:
        """Note that this queue handled ``subject`` (usually an event id)."""
        client = get_redis()
        with client.pipeline(transaction=False) as pipe:
            pipe.lpush(key("receipts", self.queue_name), json.dumps({"task": self.name, "subject": subject, "at": time.time()}))
            pipe.ltrim(key("receipts", self.queue_name), 0, RECEIPTS_KEPT - 1)
            if self.queue_name in CHANNEL_TASKS:
                events.settle(self.queue_name, subject, pipe)
            pipe.execute()

    def on_failure(self, exc, task_id, args, kwargs, einfo):  # noqa: D401 - Celery hook
        log.error("task %s failed for good on %s: %s", self.name, args, exc)
        try:
            deadletters.record(
                self.queue_name, f"{type(exc).__name__}: {exc}", task=self.name, args=args, kwargs=kwargs,
                subject=str(args[0]) if args else None,
                traceback_text="".join(traceback.format_exception(exc)), task_id=task_id,
            )
            if args and CHANNEL_TASKS.get(self.queue_name) == self.name:
                # The dead letter is now this channel's record of the event: requeueing it is
                # the operator's call, so the reconciler must stop re-dispatching it.
                events.settle(self.queue_name, str(args[0]))
        except Exception:  # the store itself may be what failed
            log.exception("could not record dead letter for %s", self.name)


def receipts(queue: str, count: int = 100) -> list[dict]:
    return [json.loads(x) for x in get_redis().lrange(key("receipts", queue), 0, count - 1)]


def dead_letters(count: int = 100) -> list[dict]:
    return deadletters.listing(count)
