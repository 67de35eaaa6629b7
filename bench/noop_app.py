"""The baseline: a raw Celery app with a no-op task on the same Redis broker."""

from __future__ import annotations

import os

import redis
from celery import Celery

PREFIX = os.environ["SYNDICATE_REDIS_PREFIX"]
app = Celery("noop", broker=os.environ["SYNDICATE_REDIS_URL"])
app.conf.update(
    broker_transport_options={"global_keyprefix": PREFIX + "noop:"},
    task_ignore_result=True,
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
)
_client = redis.Redis.from_url(os.environ["SYNDICATE_REDIS_URL"])


@app.task(name="noop")
def noop() -> None:
    # Count completions so the benchmark knows when the batch was consumed.
    _client.incr(PREFIX + "noop-done")
