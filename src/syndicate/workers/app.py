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

With ``SYNDICATE_BROKER_URL=amqp://...`` RabbitMQ is the broker and Redis stays
the store:

* every queue is a quorum queue (durable, replicated) with ``x-delivery-limit``:
  a message redelivered that often (a poison message that kills its worker each
  time) is dead-lettered to ``DEAD_LETTER_QUEUE`` instead of looping, and the
  broker upkeep task records it as a syndicate dead letter (``syndicate
  dead-letters requeue`` puts it back);
* publisher confirms (``confirm_publish``): a publish returns once the broker
  has the message, so a failover cannot drop an acknowledged enqueue;
* prefetch is per consumer (quorum queues have no global QoS), still 1;
* no countdown or ETA reaches RabbitMQ: a worker would hold such a message
  unacknowledged, in its only prefetch slot, until it is due. ``SyndicateCelery``
  puts every delayed send into the store's schedule (``DELAYED_KEY``), and the
  upkeep task (every second) sends what is due. A message killed workers held
  comes back at once: RabbitMQ requeues a closed channel's unacknowledged
  messages, with no visibility timeout.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import time

import redis
from celery import Celery
from celery.result import AsyncResult
from celery.worker.consumer import Consumer
from kombu import Exchange, Queue
from kombu.transport import redis as kombu_redis

from syndicate.config import Settings, get_settings
from syndicate.store import broker_sentinel_options, get_redis, key, redis_url

QUEUES = ("ingest", "feeds", "webhooks", "newsletter")

ROUTES = {
    "syndicate.ingest.*": {"queue": "ingest"},
    "syndicate.feeds.*": {"queue": "feeds"},
    "syndicate.webhooks.*": {"queue": "webhooks"},
    "syndicate.newsletter.*": {"queue": "newsletter"},
}

TASK_MODULES = ("syndicate.workers.ingest", "syndicate.workers.feeds", "syndicate.workers.webhooks", "syndicate.workers.newsletter")

# RabbitMQ only: where a queue's messages go once they reach the delivery limit.
DEAD_LETTER_EXCHANGE = "syndicate.dead"
DEAD_LETTER_QUEUE = "syndicate.dead"

# The store's schedule of delayed sends (RabbitMQ broker): a sorted set of JSON calls by due time.
DELAYED_KEY = ("broker", "delayed")

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

    _pooled_client = None

    @contextlib.contextmanager
    def conn_or_acquire(self, client=None):
        """One client per pool instead of kombu's new one per publish (building a redis-py client
        costs more than the LPUSH it sends); a client holds no state of its own but the pool."""
        if client:
            yield client
            return
        pool = self.pool
        if self._pooled_client is None or self._pooled_client.connection_pool is not pool:
            self._pooled_client = self._create_client()
        yield self._pooled_client


class BrokerTransport(kombu_redis.Transport):
    Channel = BrokerChannel


class SentinelBrokerChannel(BrokerChannel, kombu_redis.SentinelChannel):
    """The same fix on kombu's Sentinel channel (``SYNDICATE_REDIS_SENTINELS``)."""


class SentinelBrokerTransport(kombu_redis.SentinelTransport):
    Channel = SentinelBrokerChannel


def broker_url(settings: Settings | None = None) -> str:
    """``SYNDICATE_BROKER_URL``, else the store's Redis."""
    settings = settings or get_settings()
    return settings.broker_url or redis_url()


def quorum_arguments(settings: Settings) -> dict:
    return {"x-queue-type": "quorum", "x-delivery-limit": settings.broker_delivery_limit,
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE, "x-dead-letter-routing-key": DEAD_LETTER_QUEUE}


def dead_letter_queue() -> Queue:
    return Queue(DEAD_LETTER_QUEUE, Exchange(DEAD_LETTER_EXCHANGE, type="direct", durable=True),
                 routing_key=DEAD_LETTER_QUEUE, durable=True, queue_arguments={"x-queue-type": "quorum"})


class AmqpConsumer(Consumer):
    """Celery's consumer without the native delayed delivery set-up.

    That step declares RabbitMQ's delay exchanges and warns, at every worker start, that direct
    exchanges cannot use them. No delayed message ever reaches RabbitMQ here (``SyndicateCelery``
    keeps them in the store), so the step would only add noise and topology nobody uses.
    """

    class Blueprint(Consumer.Blueprint):
        default_steps = [step for step in Consumer.Blueprint.default_steps if not step.endswith(":DelayedDelivery")]


def _amqp_config(settings: Settings) -> dict:
    return {
        "worker_consumer": f"{__name__}:AmqpConsumer",
        "broker_url": settings.broker_url,
        "broker_transport_options": {"confirm_publish": True},
        "task_queues": [Queue(name, Exchange(name, type="direct", durable=True), routing_key=name, durable=True,
                              queue_arguments=quorum_arguments(settings)) for name in QUEUES],
        "task_default_queue_type": "quorum",
        "worker_detect_quorum_queues": True,
        "broker_heartbeat": 30,
    }


def celery_config(settings: Settings) -> dict:
    soft_limit = max(settings.task_time_limit - 30, 10)
    config = {
        "broker_url": broker_url(settings),
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
    if settings.redis_sentinels and not settings.broker_url:
        config["broker_transport"] = f"{__name__}:SentinelBrokerTransport"
        config["broker_transport_options"].update(broker_sentinel_options())
    if settings.broker_is_amqp:
        del config["broker_transport"]
        config.update(_amqp_config(settings))
    return config


class SyndicateCelery(Celery):
    """Celery, minus countdowns and ETAs on RabbitMQ: those sends wait in the store's schedule."""

    def send_task(self, name, args=None, kwargs=None, countdown=None, eta=None, task_id=None, **options):
        if (countdown or eta) and self.broker_is_amqp:
            return self._delay_in_store(name, args, kwargs, countdown, eta, task_id, options)
        return super().send_task(name, args, kwargs, countdown=countdown, eta=eta, task_id=task_id, **options)

    @property
    def broker_is_amqp(self) -> bool:
        from syndicate.config import AMQP_SCHEMES

        return str(self.conf.broker_url or "").split(":", 1)[0] in AMQP_SCHEMES

    def _delay_in_store(self, name, args, kwargs, countdown, eta, task_id, options) -> AsyncResult:
        import uuid

        if eta is not None:
            if isinstance(eta, str):
                eta = datetime.datetime.fromisoformat(eta)
            due = eta.timestamp()
        else:
            due = time.time() + float(countdown)
        task_id = task_id or str(uuid.uuid4())
        call = {"name": name, "args": list(args or ()), "kwargs": dict(kwargs or {}), "task_id": task_id,
                # retries carries a retry's count forward, so max_retries still ends it.
                **{k: options[k] for k in ("retries", "root_id", "parent_id") if options.get(k) is not None}}
        get_redis().zadd(key(*DELAYED_KEY), {json.dumps(call, sort_keys=True): due})
        return AsyncResult(task_id, app=self)


def release_delayed(app: Celery, now: float | None = None, limit: int = 500) -> int:
    """Send the delayed calls that are due (RabbitMQ broker); returns how many were sent.

    Sent first, removed second: a crash in between sends a call twice, which every task
    tolerates (each is idempotent per id); the other order could lose one.
    """
    client = get_redis()
    due = client.zrangebyscore(key(*DELAYED_KEY), "-inf", now if now is not None else time.time(),
                               start=0, num=limit)
    for raw in due:
        call = json.loads(raw)
        options = {k: call[k] for k in ("retries", "root_id", "parent_id") if k in call}
        Celery.send_task(app, call["name"], call["args"], call["kwargs"], task_id=call["task_id"], **options)
        client.zrem(key(*DELAYED_KEY), raw)
    return len(due)


def declare_dead_letter_route(app: Celery) -> None:
    """Declare the exchange and queue that quorum queues dead-letter into (RabbitMQ broker)."""
    with app.connection_for_write() as connection:
        dead_letter_queue()(connection.default_channel).declare()


def collect_dead_letters(app: Celery, limit: int = 100) -> int:
    """Record each message RabbitMQ dead-lettered as a syndicate dead letter; returns how many.

    The message (its task, args and kwargs) is kept, so ``syndicate dead-letters requeue`` sends
    it again. Recorded first, acknowledged second: a crash in between records one twice.
    """
    from syndicate import deadletters, events

    from .base import CHANNEL_TASKS

    collected = 0
    with app.connection_for_write() as connection:
        queue = dead_letter_queue()(connection.default_channel)
        queue.declare()
        while collected < limit:
            message = queue.get(no_ack=False, accept=["json"])
            if message is None:
                break
            headers = message.headers or {}
            death = (headers.get("x-death") or [{}])[0]
            origin = str(death.get("queue") or "ingest")
            reason = str(death.get("reason") or headers.get("x-first-death-reason") or "dead-lettered")
            task = headers.get("task")
            try:
                args, kwargs, _embed = message.decode()
            except Exception:  # a body that cannot be decoded is kept as its error
                args, kwargs = [], {}
            if reason == "delivery_limit":
                limit = (getattr(app.amqp.queues.get(origin), "queue_arguments", None) or {}).get("x-delivery-limit")
                error = (f"the broker gave up after {int(limit) + 1 if limit else 'too many'} deliveries (each ended "
                         "without an acknowledgement: its worker died or returned it); SYNDICATE_BROKER_DELIVERY_LIMIT")
            else:
                error = f"the broker dead-lettered the message ({reason})"
            deadletters.record(origin, error, task=task, args=args, kwargs=kwargs,
                               subject=str(args[0]) if args else None, task_id=headers.get("id"))
            if args and CHANNEL_TASKS.get(origin) == task:
                # As a task's own dead letter: the record now stands for the event on that channel.
                events.settle(origin, str(args[0]))
            message.ack()
            collected += 1
    return collected


def make_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    celery = SyndicateCelery("syndicate", include=list(TASK_MODULES))
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


from celery.signals import (  # noqa: E402
    setup_logging, worker_process_init, worker_process_shutdown, worker_ready, worker_shutdown,
)

from syndicate import instance, logs, metrics, telemetry  # noqa: E402


@setup_logging.connect
def _setup_logging(loglevel=None, **_kwargs) -> None:
    # Connected, this receiver replaces Celery's own logging set-up in workers and beat: their
    # records go through syndicate.logs (JSON lines or text, routine task lines demoted) like the API's.
    logs.setup(loglevel or "INFO")


@worker_ready.connect
def _start_heartbeat(sender, **_kwargs) -> None:
    # /readyz counts a worker alive while its heartbeat is fresh (syndicate.instance).
    instance.start_heartbeat(sender.hostname, queues=sorted(sender.app.amqp.queues.consume_from))
    if get_settings().broker_is_amqp:
        # Declared before any message can reach the delivery limit, so RabbitMQ has where to put it.
        declare_dead_letter_route(sender.app)


@worker_shutdown.connect
def _stop_heartbeat(**_kwargs) -> None:
    instance.stop_heartbeats()
    # A threads worker runs its tasks itself: flush its spans and drop its live gauges, as a prefork
    # child does when it goes (a prefork parent has neither).
    telemetry.shutdown()
    metrics.process_exited()


@worker_ready.connect
def _serve_metrics(**_kwargs) -> None:
    # The parent process serves its pool's metrics (syndicate.metrics) when a port is set.
    metrics.serve_worker_metrics()


@worker_process_init.connect
def _trace_child(**_kwargs) -> None:
    # Each prefork child sets up its own tracing (syndicate.telemetry; off unless SYNDICATE_OTEL=1).
    telemetry.setup("syndicate-worker")


@worker_process_shutdown.connect
def _forget_child_metrics(pid=None, **_kwargs) -> None:
    metrics.process_exited(pid)
    telemetry.shutdown()
