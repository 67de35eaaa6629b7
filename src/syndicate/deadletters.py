"""Dead letters: work that failed for good, kept with what is needed to redo it (Mailman's shunt queue).

Two kinds of record share one list, newest first:

* a task that exhausted its retries (written by the task base class), and
* one story a channel could not process, skipped so the rest of the feed,
  edition or delivery batch goes on (written by the channel itself).

Each record names the channel, the article when there is one, the error, and
the task (name, args, kwargs) that redoes the work, so ``syndicate
dead-letters requeue`` can put it back once the cause is fixed. A per-channel
counter only ever grows, for /metrics.

Keys (under the deployment prefix):
    dead-letters          list  JSON records, newest first, capped
    dead-letters:total    hash  channel -> dead letters ever recorded
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from .store import get_redis, key

KEPT = 10_000


def record(channel: str, error: str, *, task: str | None = None, args: list[Any] | tuple[Any, ...] = (),
           kwargs: dict[str, Any] | None = None, article_id: str | None = None, subject: str | None = None,
           traceback_text: str = "", task_id: str | None = None, client: redis.Redis | None = None) -> dict[str, Any]:
    """Keep one dead letter; ``task``/``args``/``kwargs`` say how to redo the work."""
    entry = {
        "channel": channel,
        "queue": channel,
        "task": task,
        "args": list(args or ()),
        "kwargs": dict(kwargs or {}),
        "article_id": article_id,
        "subject": subject,
        "error": error[:2000],
        "traceback": traceback_text[-4000:],
        "at": time.time(),
        "task_id": task_id,
    }
    client = client or get_redis()
    with client.pipeline(transaction=True) as pipe:
        pipe.lpush(key("dead-letters"), json.dumps(entry, ensure_ascii=False))
        pipe.ltrim(key("dead-letters"), 0, KEPT - 1)
        pipe.hincrby(key("dead-letters", "total"), channel, 1)
        pipe.execute()
    return entry


def listing(count: int = 100, client: redis.Redis | None = None) -> list[dict[str, Any]]:
    """The newest ``count`` dead letters."""
    return [json.loads(x) for x in (client or get_redis()).lrange(key("dead-letters"), 0, count - 1)]


def totals(client: redis.Redis | None = None) -> dict[str, int]:
    """Dead letters ever recorded, per channel."""
    return {k: int(v) for k, v in (client or get_redis()).hgetall(key("dead-letters", "total")).items()}
