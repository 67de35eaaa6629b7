"""How many messages wait on each Celery queue, whichever broker carries them.

Autoscalers (KEDA on the Prometheus gauge), ``syndicate status``, the console and
the reconciler (which re-dispatches only into an empty queue) all read
``queue_depths()``.

* Redis broker: kombu splits a queue into one list per priority step when
  messages carry a priority (``ingest``, ``ingest\\x06\\x163``, ...,
  ``ingest\\x06\\x169``), all under the broker's key prefix; a plain LLEN of
  ``ingest`` misses every message in the other lists. The depth is the sum of
  them all, read in one pipeline.
* RabbitMQ broker: a passive ``queue.declare`` answers the count of messages
  ready for delivery (what waits, as on Redis: messages a worker holds are not
  counted). A queue not declared yet holds nothing.
"""

from __future__ import annotations

from kombu.transport.redis import PRIORITY_STEPS

from .config import get_settings
from .store import get_redis

QUEUES = ("ingest", "feeds", "webhooks", "newsletter")

# kombu's separator between a queue's name and its priority step (kombu.transport.redis).
PRIORITY_SEP = "\x06\x16"


def priority_lists(queue: str) -> list[str]:
    """The Redis lists (without the broker prefix) that hold ``queue``'s messages, one per priority step."""
    return [queue if step == 0 else f"{queue}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS]


def queue_depths(queues: tuple[str, ...] | list[str] = QUEUES, app=None) -> dict[str, int]:
    """Messages waiting on each of ``queues`` (default: every syndicate queue) of ``app``'s broker
    (default: the configured one)."""
    if app is None:
        from syndicate.workers.app import app
    if app.broker_is_amqp:
        return _rabbitmq_depths(list(queues), app)
    return _redis_depths(list(queues))


def queue_depth(queue: str) -> int:
    return queue_depths((queue,))[queue]


def _redis_depths(queues: list[str]) -> dict[str, int]:
    prefix = get_settings().broker_prefix
    with get_redis().pipeline(transaction=False) as pipe:
        for queue in queues:
            for name in priority_lists(queue):
                pipe.llen(prefix + name)
        counts = pipe.execute()
    steps = len(PRIORITY_STEPS)
    return {queue: sum(counts[i * steps:(i + 1) * steps]) for i, queue in enumerate(queues)}


def _rabbitmq_depths(queues: list[str], app) -> dict[str, int]:
    from amqp.exceptions import NotFound

    depths: dict[str, int] = {}
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=5)
        channel = connection.channel()
        try:
            for queue in queues:
                try:
                    depths[queue] = channel.queue_declare(queue=queue, passive=True).message_count
                except NotFound:
                    # A passive declare of a missing queue closes the channel: open another.
                    depths[queue] = 0
                    channel = connection.channel()
        finally:
            try:
                channel.close()
            except Exception:  # the connection closes anyway on leaving the block
                pass
    return depths
