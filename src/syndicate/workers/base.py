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
import functools
import inspect
import json
import logging
import time
import traceback

import kombu.exceptions
import redis
from celery import Task
from celery.signals import task_postrun

from syndicate import deadletters, events, logs, metrics
from syndicate.config import get_settings
from syndicate.store import get_redis, key

log = logging.getLogger("syndicate.workers")

# Errors that say "try again later": a network fault, or the store restarting or failing over.
# redis-py's ConnectionError and TimeoutError are not OSError, so OSError alone misses them;
# kombu's OperationalError is what a publish raises once it gave up reaching the broker, and
# BatchPublishError what a batch of publishes raises when its one round trip failed (delivery
# uncertain: sending again is safe, every task is idempotent per id).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError, redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, kombu.exceptions.OperationalError,
    kombu.exceptions.BatchPublishError,
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
    # Celery's jitter draws each wait between 0 and the backoff, so 12 tries span about two
    # minutes on average: a store restart or a short outage is ridden out, not dead-lettered.
    max_retries = 12

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

    def receipt(self, subject: str) -> tuple[str, str, int]:
        """The receipts list of this queue, the receipt for ``subject``, and how many the list keeps."""
        receipt = json.dumps({"task": self.name, "subject": subject, "at": time.time()})
        return key("receipts", self.queue_name), receipt, RECEIPTS_KEPT

    def record_receipt(self, subject: str) -> None:
        """Note that this queue handled ``subject`` (usually an event id)."""
        with get_redis().pipeline(transaction=False) as pipe:
            self.queue_receipt(subject, pipe)
            pipe.execute()

    def queue_receipt(self, subject: str, pipe) -> None:
        """Add the receipt's commands to ``pipe``, behind the writes it vouches for: Redis runs a
        connection's commands in order, so the receipt is never recorded without them."""
        receipts_key, receipt, kept = self.receipt(subject)
        pipe.lpush(receipts_key, receipt)
        pipe.ltrim(receipts_key, 0, kept - 1)
        if self.queue_name in CHANNEL_TASKS:
            events.settle(self.queue_name, subject, pipe)

    # Outcome logging: one line per task run, carrying the ids an operator searches for.

    def before_start(self, task_id, args, kwargs):  # noqa: D401 - Celery hook
        _started[task_id] = time.monotonic()

    def outcome_fields(self, task_id: str, args, kwargs, outcome: str) -> dict:
        """The ``extra=`` of an outcome line: task, queue, subject, ids, outcome and duration."""
        started = _started.pop(task_id, None)
        fields = {"task": self.name, "queue": self.queue_name, "task_id": task_id, "outcome": outcome,
                  "subject": str(args[0]) if args else None,
                  "duration_ms": round((time.monotonic() - started) * 1000, 1) if started is not None else None}
        fields.update(_ids(self, args, kwargs))
        metrics.task_finished(self.queue_name, self.name, outcome, fields["duration_ms"])
        return fields

    def on_success(self, retval, task_id, args, kwargs):  # noqa: D401 - Celery hook
        fields = self.outcome_fields(task_id, args, kwargs, "success")
        # A periodic task that found nothing to do returns nothing (0, [], None): beat runs the
        # webhook drain every second, and a quiet system's log must stay quiet at INFO.
        level = logging.DEBUG if not retval and self.name in _periodic(self) else logging.INFO
        log.log(level, "task %s succeeded%s in %.1f ms", self.name, _on(fields), fields["duration_ms"] or 0.0,
                extra=fields)

    def on_retry(self, exc, task_id, args, kwargs, einfo):  # noqa: D401 - Celery hook
        fields = self.outcome_fields(task_id, args, kwargs, "retry")
        log.warning("task %s will retry%s: %s: %s", self.name, _on(fields), type(exc).__name__, exc, extra=fields)

    def on_failure(self, exc, task_id, args, kwargs, einfo):  # noqa: D401 - Celery hook
        fields = self.outcome_fields(task_id, args, kwargs, "failure")
        log.error("task %s failed for good%s: %s: %s", self.name, _on(fields), type(exc).__name__, exc,
                  extra=fields)
        try:
            deadletters.record(
                self.queue_name, f"{type(exc).__name__}: {exc}", task=self.name, args=args, kwargs=kwargs,
                subject=str(args[0]) if args else None,
                traceback_text="".join(traceback.format_exception(exc)), task_id=task_id,
            )
            if args and CHANNEL_TASKS.get(self.queue_name) == self.name and not isinstance(exc, TRANSIENT_ERRORS):
                # The dead letter is now this channel's record of the event: requeueing it is
                # the operator's call, so the reconciler must stop re-dispatching it. After an
                # outage that outlasted the retries the event stays owed instead: the reconciler
                # redoes it once the store is back, which is all a requeue would do.
                events.settle(self.queue_name, str(args[0]))
        except Exception:  # the store itself may be what failed
            log.exception("could not record dead letter for %s", self.name)


# Start times of the runs in progress in this process, by task id (threads share it; a prefork
# child has its own). The outcome hooks take an entry out; task_postrun, sent after every run
# (one that raised Ignore or Reject too, which no outcome hook sees), whatever is left.
_started: dict[str, float] = {}


@task_postrun.connect
def _forget_start(task_id=None, **_kwargs) -> None:
    _started.pop(task_id, None)


def _ids(task: Task, args, kwargs) -> dict:
    """The ids among a task's arguments, named after its parameters (``deliver(delivery_id)``)."""
    names = _parameters(task.run)
    if names is None:
        return {}
    values = dict(zip(names, args or ()))
    values.update(kwargs or {})
    return {name: values[name] for name in logs.ID_FIELDS if isinstance(values.get(name), str)}


@functools.lru_cache(maxsize=512)
def _parameters(run) -> tuple[str, ...] | None:
    # Once per task function: inspect.signature costs more than the rest of a run's outcome line.
    try:
        return tuple(p for p in inspect.signature(run).parameters if p != "self")
    except (TypeError, ValueError):
        return None


def _on(fields: dict) -> str:
    return f" on {fields['subject']}" if fields.get("subject") else ""


def _periodic(task: Task) -> set[str]:
    return {entry["task"] for entry in (task.app.conf.beat_schedule or {}).values()}


def receipts(queue: str, count: int = 100) -> list[dict]:
    return [json.loads(x) for x in get_redis().lrange(key("receipts", queue), 0, count - 1)]


def dead_letters(count: int = 100) -> list[dict]:
    return deadletters.listing(count)
