"""The Celery app: Redis broker, one queue per channel, routing by task name.

Reliability settings are chosen on purpose:

* ``task_acks_late`` + ``task_reject_on_worker_lost``: a task is acknowledged
  only after it ran, so a worker killed mid-task leaves it to be redelivered.
  Every task is therefore idempotent per event id.
* ``worker_prefetch_multiplier = 1``: the tasks do I/O (HTTP, SMTP, Redis); a
  worker must not hoard messages another idle worker could run.
* ``task_ignore_result``: nothing reads results; state lives in the store.
* ``visibility_timeout`` above the longest task time limit: the Redis transport
  redelivers an unacked message after it, so a slow task must finish well before.
  Long waits (webhook retries) live in a Redis schedule, never in ETA/countdown.
* ``global_keyprefix``: the broker's keys sit under the deployment's prefix, so
  one Redis can serve several deployments or test runs side by side.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from syndicate.config import Settings, get_settings
from syndicate.store import redis_url

QUEUES = ("ingest", "feeds", "webhooks", "newsletter")

ROUTES = {
    "syndicate.ingest.*": {"queue": "ingest"},
    "syndicate.feeds.*": {"queue": "feeds"},
    "syndicate.webhooks.*": {"queue": "webhooks"},
    "syndicate.newsletter.*": {"queue": "newsletter"},
}

TASK_MODULES = ("workers.ingest", "workers.feeds", "workers.webhooks", "workers.newsletter")


def celery_config(settings: Settings) -> dict:
    soft_limit = max(settings.task_time_limit - 30, 10)
    return {
        "broker_url": redis_url(),
        "broker_transport_options": {
            "global_keyprefix": settings.broker_prefix,
            "visibility_timeout": settings.task_time_limit * 4,
        },
        "broker_connection_retry_on_startup": True,
        "result_backend": None,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": settings.task_time_limit,
        "task_soft_time_limit": soft_limit,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_default_queue": "ingest",
        "task_queues": [Queue(name) for name in QUEUES],
        "task_routes": ROUTES,
        "task_create_missing_queues": False,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "timezone": "UTC",
        "enable_utc": True,
        "beat_schedule": {},
    }


def make_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    celery = Celery("syndicate", include=list(TASK_MODULES))
    celery.conf.update(celery_config(settings))
    return celery


app = make_app()


def _collect_beat_schedule() -> dict:
    # Each task module declares its periodic work in BEAT_SCHEDULE beside the task.
    import importlib

    schedule: dict = {}
    for name in TASK_MODULES:
        schedule.update(getattr(importlib.import_module(name), "BEAT_SCHEDULE", {}))
    return schedule


app.conf.beat_schedule = _collect_beat_schedule()
