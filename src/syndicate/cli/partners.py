"""``syndicate partners …`` and ``syndicate deliveries …``: the partner registry and the delivery log."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..errors import Problem, ValidationFailed
from ..webhooks.timeparse import parse_since
from .common import EXIT_FAILED, echo_json, handle_errors

def _guard():
    from ..config import get_settings
    from ..webhooks.guard import Guard

    return Guard.from_settings(get_settings())


def _show_secret(secret: str, what: str) -> None:
    click.echo(f"{what}: {secret}")
    click.echo("Store it now: it is shown only this once. Partners verify with it (Standard Webhooks).", err=True)


@click.group("partners")
def partners_group() -> None:
    """Partner endpoints that receive signed webhooks."""


@partners_group.command("add")
@click.argument("name", required=False)
@click.argument("url", required=False)
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False), help="A partner configuration (src/syndicate/schemas/partner.schema.json) instead of NAME URL.")
@click.option("--event", "event_types", multiple=True, help="An event type to send (repeatable; default: all article events).")
@click.option("--section", "sections", multiple=True, help="Only stories of this section (repeatable; default: all).")
@click.option("--description", default=None, help="A note for operators about this partner.")
@click.option("--header", "headers", multiple=True, help="An extra header 'Name: value' sent with every attempt (repeatable).")
@click.option("--full-article", is_flag=True, help="Send the whole article in data.article.")
@click.option("--disabled", is_flag=True, help="Register it disabled.")
@handle_errors
def partners_add(name: str | None, url: str | None, file: str | None, event_types: tuple[str, ...],
                 sections: tuple[str, ...], description: str | None, headers: tuple[str, ...],
                 full_article: bool, disabled: bool) -> None:
    """Register a partner (NAME URL, or --file); prints its signing secret once."""
    from ..webhooks import registry

    if file:
        from .articles import load_document

        config: dict[str, Any] = load_document(Path(file))
    else:
        if not name or not url:
            raise click.UsageError("give NAME and URL, or --file with a partner configuration")
        config = {"name": name, "url": url}
    if event_types:
        config["eventTypes"] = list(event_types)
    if sections:
        config["sections"] = list(sections)
    if description is not None:
        config["description"] = description
    if full_article:
        config["fullArticle"] = True
    if disabled:
        config["enabled"] = False
    if headers:
        extra = dict(config.get("headers") or {})
        for i, raw in enumerate(headers):
            key, sep, value = raw.partition(":")
            if not sep:
                raise ValidationFailed([Problem(f"$.headers[{i}]", f"{raw!r} is not 'Name: value'")])
            extra[key.strip()] = value.strip()
        config["headers"] = extra
    record, secret = registry.add(config, _guard())
    click.echo(f"partner {record['name']} added: {record['url']}")
    _show_secret(secret, "secret")


@partners_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def partners_list(as_json: bool) -> None:
    """Every partner: state, URL, what it receives."""
    from ..webhooks import registry

    records = [registry.public(r) for r in registry.all_partners()]
    if as_json:
        echo_json(records)
        return
    if not records:
        click.echo("no partners; add one with `syndicate partners add NAME URL`")
    for r in records:
        state = "enabled " if r.get("enabled") else "DISABLED"
        sections = ",".join(r.get("sections") or []) or "all sections"
        click.echo(f"{r['name']:<24} {state} {r['url']}  [{','.join(r['eventTypes'])}] [{sections}]")


@partners_group.command("show")
@click.argument("name")
@handle_errors
def partners_show(name: str) -> None:
    """One partner's configuration, secret dates and health (never the secret itself)."""
    from ..webhooks import registry

    echo_json(registry.shown(name))


@partners_group.command("enable")
@click.argument("name")
@handle_errors
def partners_enable(name: str) -> None:
    """Send to this partner again (new events; `recover` re-sends what failed meanwhile)."""
    from ..webhooks import registry

    registry.set_enabled(name, True)
    click.echo(f"partner {name} enabled")


@partners_group.command("disable")
@click.argument("name")
@click.option("--reason", default=None, help="Shown in `partners show` and the delivery log.")
@handle_errors
def partners_disable(name: str, reason: str | None) -> None:
    """Stop sending to this partner; pending retries fail and new stories are skipped, with the reason."""
    from ..webhooks import registry

    registry.set_enabled(name, False, reason)
    click.echo(f"partner {name} disabled")


@partners_group.command("rotate-secret")
@click.argument("name")
@click.option("--grace-hours", type=float, default=None,
              help="How long the old secret keeps signing too (default: SYNDICATE_WEBHOOK_ROTATION_GRACE_HOURS).")
@handle_errors
def partners_rotate(name: str, grace_hours: float | None) -> None:
    """A new signing secret, shown once; the old one also signs during the grace period."""
    from ..config import get_settings
    from ..webhooks import registry

    hours = get_settings().webhook_rotation_grace_hours if grace_hours is None else grace_hours
    _record, secret = registry.rotate(name, hours * 3600)
    click.echo(f"partner {name}: new secret; the previous one keeps signing for {hours:g} h")
    _show_secret(secret, "secret")


@partners_group.command("remove")
@click.argument("name")
@handle_errors
def partners_remove(name: str) -> None:
    """Forget a partner (its delivery log stays until the retention drops it)."""
    from ..webhooks import registry

    registry.remove(name)
    click.echo(f"partner {name} removed")


@partners_group.command("recover")
@click.argument("name")
@click.option("--since", required=True, help="RFC 3339 time or an age (90m, 2h, 3d).")
@handle_errors
def partners_recover(name: str, since: str) -> None:
    """Re-send every failed or skipped delivery to NAME created since --since (NAME must be enabled)."""
    from ..webhooks import service
    from syndicate.workers.webhooks import enqueue_deliver

    ids = service.recover(name, parse_since(since), service.context())
    if ids:
        with click.progressbar(ids, label="re-sending", file=sys.stderr) as bar:
            for delivery_id in bar:
                enqueue_deliver(delivery_id)
    click.echo(f"re-sending {len(ids)} failed or skipped deliver{'y' if len(ids) == 1 else 'ies'} to {name}")
    for delivery_id in ids:
        click.echo(delivery_id)


def _echo_attempt(attempt: dict[str, Any]) -> None:
    code = attempt.get("status_code")
    click.echo(f"  #{attempt.get('n')} {attempt.get('at')}  {code if code is not None else '---'}  "
               f"{attempt.get('latency_ms', 0):.1f} ms  {attempt.get('result')}"
               + (f"  {attempt['error']}" if attempt.get("error") else ""))


@partners_group.command("ping")
@click.argument("name")
@handle_errors
def partners_ping(name: str) -> None:
    """Send a signed webhook.test event now and show the attempt (exit 1 if it failed)."""
    from ..webhooks import service

    shown = service.ping(name, service.context())
    click.echo(f"ping {shown['id']} to {name}: {shown['status']}")
    for attempt in shown["attempt_log"]:
        _echo_attempt(attempt)
    if shown["status"] != "succeeded":
        sys.exit(EXIT_FAILED)


@click.group("deliveries")
def deliveries_group() -> None:
    """The webhook delivery log: every attempt, and resend."""


@deliveries_group.command("list")
@click.option("--partner", default=None, help="Only deliveries to this partner (default: all).")
@click.option("--status", type=click.Choice(["pending", "succeeded", "failed", "skipped"]), default=None,
              help="Only deliveries in this state (default: all).")
@click.option("--limit", default=50, show_default=True, help="How many deliveries to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def deliveries_list(partner: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """Deliveries, newest first."""
    from ..webhooks import service

    rows = service.listing(partner, status, limit)
    if as_json:
        echo_json(rows)
        return
    for d in rows:
        code = d["last_status_code"] or "---"
        click.echo(f"{d['id']}  {d['created_at']}  {d['partner']:<20} {d['type']:<18} {d['status']:<9} "
                   f"{d['attempts']} attempt(s)  last {code}" + (f"  {d['last_error']}" if d["last_error"] else ""))


@deliveries_group.command("show")
@click.argument("delivery_id")
@handle_errors
def deliveries_show(delivery_id: str) -> None:
    """One delivery with its body and every attempt."""
    from ..webhooks import service

    echo_json(service.show(delivery_id))


@deliveries_group.command("resend")
@click.argument("delivery_id")
@click.option("--queue", "queued", is_flag=True, help="Hand the attempt to a worker instead of making it here and now.")
@handle_errors
def deliveries_resend(delivery_id: str, queued: bool) -> None:
    """Send a delivery again (same webhook-id and body), with a fresh retry schedule, and show the attempt.

    Exit 1 when the attempt failed (its retries, if any, go on in the workers)."""
    from ..webhooks import service

    context = service.context()
    service.resend(delivery_id, context)
    if queued:
        from syndicate.workers.webhooks import enqueue_deliver

        enqueue_deliver(delivery_id)
        click.echo(f"re-sending {delivery_id}; `syndicate deliveries show {delivery_id}` shows the attempts")
        return
    note = service.attempt(delivery_id, context)
    shown = service.show(delivery_id)
    click.echo(f"resend {delivery_id} to {shown['partner']}: {shown['status']}")
    if note is None:  # a worker claimed it first (it was due at once): its attempt is in the log
        click.echo("  a worker is attempting it; `syndicate deliveries show` has the outcome")
        return
    _echo_attempt(service.present_attempt(note))
    if shown["status"] == "pending" and shown["next_attempt_at"]:
        click.echo(f"  next attempt at {shown['next_attempt_at']}")
    if shown["status"] != "succeeded":
        sys.exit(EXIT_FAILED)


COMMANDS = [partners_group, deliveries_group]
