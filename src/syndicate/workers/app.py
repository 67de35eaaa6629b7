"""The Celery app: Redis broker, one queue per channel, routing by task name.

Reliability settings are chosen on purpose:

* ``task_acks_late`` + ``task_reject_on_worker_lost``: a task is acknowledged
  only after it ran, so a worker killed mid-task leaves it to be redelivered.
  Every task is therefore idempotent per event id.
* ``worker_prefetch_multiplier = 1``: the tasks do I/O (HTTP, SMTP, Redis); a
  worker must not hoard messages another idle worker could run.
* ``task_ignore_result``: nothing reads results; state lives in the store.
* ``visibility_timeout`` (``SYNDICATE_VISIBILITY_TIMEOUT``, 90 s): the Redis
  transport redelivers a message unacknowledged for that long, which is how the
  work of a killed worker parent comes back; every worker sweeps for such
  messages every ``RESTORE_INTERVAL`` seconds, so it is redone within about
  visibility + interval (under two minutes). A task still running past it is
  delivered again while it runs, so every long task is safe to run twice at once:
  ``send_edition`` holds a lease (a second run returns), webhook attempts run
  under per-delivery leases, feed renders are single flight, the rest are short
  and idempotent per event id. Countdowns stay at or under 60 s (retries back off
  to 30 s at most, the WebSub flush waits 60 s at most), well within the timeout;
  long waits (webhook retries) live in a Redis schedule, never in ETA/countdown.
* ``global_keyprefix``: the broker's keys sit under the deployment's prefix, so
  one Redis can serve several deployments or test runs side by side.
"""

from __future__ import annotations

import redis
from celery import Celery
from kombu import Queue
from kombu.transport import redis as kombu_redis

from syndicate.config import Settings, get_settings
from syndicate.store import redis_url

QUEUES = ("ingest", "feeds", "webhooks", "newsletter")

ROUTES = {
    "syndicate.ingest.*": {"queue": "ingest"},
    "syndicate.feeds.*": {"queue": "feeds"},
    "syndicate.webhooks.*": {"queue": "webhooks"},
    "syndicate.newsletter.*": {"queue": "newsletter"},
}

TASK_MODULES = ("syndicate.workers.ingest", "syndicate.workers.feeds", "syndicate.workers.webhooks", "syndicate.workers.newsletter")

# Seconds between each worker's sweeps for messages unacknowledged past the visibility timeout.
RESTORE_INTERVAL = 5


class BrokerChannel(kombu_redis.Channel):
    """kombu's Redis channel, minus a crash of the whole worker when the broker restarts.

    When the broker connection breaks, Celery (5.7) first collects the connection, which
    releases the transport (``transport.client = None``), and then closes it. If a task
    was running, closing the channel tries to restore its unacknowledged message, which
    builds a new connection pool from ``transport.client`` and raises AttributeError
    ("'NoneType' object has no attribute 'hostname'"). That is not a connection error,
    so it escapes Celery's cleanup and the worker exits ("Unrecoverable error").

    Raising a connection error instead lets the cleanup go on and the worker reconnect.
    Nothing is lost by skipping that restore: the message is still in the broker's unacked
    hash, and the periodic sweep puts it back once the visibility timeout has passed.
    A producer channel left over from the broken connection (``connection`` itself None)
    fails the same way on its next publish; as a connection error, kombu's publish retry
    revives the connection instead of giving up.
    """

    def _connparams(self, asynchronous: bool = False) -> dict:
        if self.connection is None or self.connection.client is None:
            raise redis.ConnectionError("the broker connection is already closed")
        return super()._connparams(asynchronous=asynchronous)


class BrokerTransport(kombu_redis.Transport):
    Channel = BrokerChannel


def celery_config(settings: Settings) -> dict:
    soft_limit = max(settings.task_time_limit - 30, 10)
    return {
        "broker_url": redis_url(),
        "broker_transport": f"{__name__}:BrokerTransport",
        "broker_transport_options": {
            "global_keyprefix": settings.broker_prefix,
            "visibility_timeout": settings.visibility_timeout,
            # Sweep every RESTORE_INTERVAL s (throttle 1: every sweep scans; the default scans
            # every 10th, which made the effective period 100 s).
            "unacked_restore_interval": RESTORE_INTERVAL,
            "unacked_restore_throttle": 1,
            # A worker killed while it held the sweep's lock would block every sweep until the lock
            # expires (300 s by default). Overlapping sweeps are harmless: each restore is a WATCH
            # transaction on the unacked hash, so a message is put back once.
            "unacked_mutex_expire": 15,
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


from celery.signals import setup_logging, worker_ready, worker_shutdown  # noqa: E402

from syndicate import instance, logs  # noqa: E402


@setup_logging.connect
def _setup_logging(loglevel=None, **_kwargs) -> None:
    # Connected, this receiver replaces Celery's own logging set-up in workers and beat: their
    # records go through syndicate.logs (JSON lines or text, routine task lines demoted) like the API's.
    logs.setup(loglevel or "INFO")


@worker_ready.connect
def _start_heartbeat(sender, **_kwargs) -> None:
    # /readyz counts a worker alive while its heartbeat is fresh (syndicate.instance).
    instance.start_heartbeat(sender.hostname, queues=sorted(sender.app.amqp.queues.consume_from))


@worker_shutdown.connect
def _stop_heartbeat(**_kwargs) -> None:
    instance.stop_heartbeats()
