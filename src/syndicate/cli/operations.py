"""Operator commands: ``status``, ``events``, ``reconcile``, ``dead-letters``."""

from __future__ import annotations

import json

import click

from .common import echo_json, handle_errors, shown_url


@click.command("status")
@handle_errors
def status_cmd() -> None:
    """Queue depths, pending events and dead letters."""
    from syndicate.workers.app import QUEUES
    from ..config import get_settings
    from ..store import get_redis, key

    client = get_redis()
    settings = get_settings()
    click.echo(f"redis          {shown_url(settings.redis_url or '')} (prefix {settings.redis_prefix})")
    if settings.broker_is_amqp:
        click.echo(f"broker         {shown_url(settings.broker_url or '')} (RabbitMQ)")
    from ..queues import queue_depths

    for queue, depth in queue_depths(QUEUES).items():
        click.echo(f"queue {queue:<9} {depth} waiting")
    click.echo(f"pending events {client.zcard(key('events:pending'))} (logged, not yet fanned out)")
    from .. import events
    from syndicate.workers.base import CHANNEL_TASKS

    owed = events.owed_counts(tuple(CHANNEL_TASKS))
    click.echo("receipts owed  " + ", ".join(f"{channel} {n}" for channel, n in owed.items())
               + " (fanned out, channel not yet done)")
    click.echo(f"dead letters   {client.llen(key('dead-letters'))}")
    click.echo(f"articles       {client.zcard(key('articles'))} live")


@click.group("events")
def events_group() -> None:
    """The durable event log."""


@events_group.command("list")
@click.option("--limit", default=20, show_default=True, help="How many events to show.")
@handle_errors
def events_list(limit: int) -> None:
    """The newest events, newest first."""
    from .. import events

    for entry in events.recent_events(limit):
        click.echo(f"{entry['id']}  {entry['type']:<18} {entry['article_id']} v{entry['version']}")


@events_group.command("show")
@click.argument("event_id")
@handle_errors
def events_show(event_id: str) -> None:
    """One event with its article snapshot."""
    from .. import events
    from ..errors import NotFound

    event = events.get_event(event_id)
    if event is None:
        raise NotFound(f"no event {event_id!r} (unknown, or older than the retention)")
    echo_json(event)


@click.command("reconcile")
@handle_errors
def reconcile_cmd() -> None:
    """Re-send stuck fan-outs and channels with no receipt after the grace (what beat does every 30 s)."""
    from syndicate.workers.ingest import reconcile

    count = reconcile.run()
    click.echo(f"sent {count} task(s) (fan-outs and channel re-dispatches)")


@click.group("dead-letters")
def dead_letters_group() -> None:
    """Tasks that failed for good, kept so they can be put back."""


def _one_line(text: object, limit: int = 200) -> str:
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _describe(index: int, record: dict) -> str:
    """One line per dead letter: channel, article (if any), error, and the task that redoes it.

    Older records named the queue but not the channel, and a skipped story may carry no
    task, so every field is read with a fallback.
    """
    channel = record.get("channel") or record.get("queue") or "?"
    article = record.get("article_id") or "-"
    redo = f"{record['task']} {json.dumps(record.get('args') or [], ensure_ascii=False)}" if record.get("task") \
        else "(no task: cannot be requeued)"
    return f"{index}  {channel:<10} article {article}  error: {_one_line(record.get('error'))}  redo: {redo}"


@dead_letters_group.command("list")
@click.option("--limit", default=20, show_default=True, help="How many dead letters to show.")
@handle_errors
def dead_letters_list(limit: int) -> None:
    """The newest dead letters: channel, article, error and the task that redoes the work."""
    from .. import deadletters

    records = deadletters.listing(limit)
    if not records:
        click.echo("no dead letters")
    for i, record in enumerate(records):
        click.echo(_describe(i, record))


@dead_letters_group.command("requeue")
@click.option("--all", "everything", is_flag=True, help="Put every dead letter back on its queue.")
@handle_errors
def dead_letters_requeue(everything: bool) -> None:
    """Send dead-lettered tasks again, oldest first; each record goes only once its task is sent."""
    from syndicate.workers.app import app
    from ..store import get_redis, key

    client = get_redis()
    count = kept = 0
    # Oldest first (the list is newest first). A record leaves the list only after its task
    # was handed to the broker, so a broker failure midway loses nothing.
    for raw in reversed(client.lrange(key("dead-letters"), 0, -1)):
        try:
            record = json.loads(raw)
        except ValueError:
            record = {}
        if not isinstance(record, dict) or not record.get("task"):
            kept += 1
            continue
        app.send_task(record["task"], args=record.get("args") or [], kwargs=record.get("kwargs") or {})
        client.lrem(key("dead-letters"), -1, raw)
        count += 1
        if not everything:
            break
    click.echo(f"requeued {count} task(s)" + (f"; {kept} record(s) without a task stay listed" if kept else ""))


COMMANDS = [status_cmd, events_group, reconcile_cmd, dead_letters_group]
