"""CLI of the newsletter channel: ``digest``, ``lists`` and ``subscribers``."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import click

from ..errors import Problem, ValidationFailed
from .common import echo_json, handle_errors


@click.group("digest")
def digest_group() -> None:
    """Newsletter editions: preview the next one, send one now, see what went out."""


@digest_group.command("preview")
@click.argument("list_id")
@click.option("--html", "fmt", flag_value="html", default=True, help="The HTML part (default).")
@click.option("--text", "fmt", flag_value="text", help="The plain-text part.")
@handle_errors
def preview_cmd(list_id: str, fmt: str) -> None:
    """Show the next edition of LIST without sending or rotating anything."""
    from ..newsletter import service

    body, count = service.preview(list_id, fmt)
    if count == 0:
        click.echo(f"{list_id}: no new stories; the next edition would be skipped", err=True)
        return
    click.echo(body, nl=False)


@digest_group.command("send")
@click.argument("list_id")
@click.option("--now", "now", is_flag=True, required=True, help="Build and send a manual edition right away.")
@handle_errors
def send_cmd(list_id: str, now: bool) -> None:
    """Send a manual edition of LIST now (stories since the previous edition)."""
    from ..newsletter import service
    from ..store import get_redis, key

    eid = service.open_manual(list_id)
    total = get_redis().zcard(key("nl", "confirmed", list_id))
    with click.progressbar(length=max(total, 1), label=f"sending {eid}", file=sys.stderr) as bar:
        result = service.run_edition(eid, progress=bar.update)
    _print_summary(result)


@digest_group.command("resume")
@click.argument("edition_id")
@handle_errors
def resume_cmd(edition_id: str) -> None:
    """Go on with a FAILED edition (e.g. after fixing SMTP credentials); nobody gets it twice."""
    from ..newsletter import editions, service

    record = editions.get_edition(edition_id)
    total = editions.tally(edition_id)["pending"] if record else 1
    with click.progressbar(length=max(total, 1), label=f"resuming {edition_id}", file=sys.stderr) as bar:
        result = service.resume(edition_id, progress=bar.update)
    _print_summary(result)


@digest_group.command("status")
@click.argument("list_id")
@click.option("--limit", default=10, show_default=True, help="How many editions to show, newest first.")
@handle_errors
def status_cmd(list_id: str, limit: int) -> None:
    """The latest editions of LIST with their counts (skipped ones too)."""
    from ..newsletter import editions, lists

    lists.get_list(list_id)
    for record in editions.history(list_id, limit):
        counts = editions.tally(record["id"]) if record.get("state") not in ("skipped", "open") else {}
        shown = " ".join(f"{k}={v}" for k, v in counts.items() if v)
        reason = f"{shown}  {record['reason']}" if record.get("reason") and shown else record.get("reason") or shown
        click.echo(f"{record['id']}  {record.get('state'):<8} {reason}")


def _print_summary(result: dict) -> None:
    state = result.get("state")
    if state == "skipped":
        click.echo(f"{result['id']}: skipped ({result.get('reason')})")
        return
    if state == "failed":
        click.echo(f"{result['id']}: FAILED: {result.get('reason')}", err=True)
        sys.exit(1)
    counts = result.get("counts", {})
    click.echo(f"{result['id']}: {state}, {result.get('stories', 0)} stories; "
               + ", ".join(f"{v} {k}" for k, v in counts.items() if v))
    if result.get("note"):
        # A paused edition (the SMTP server unreachable) is not an error: beat resumes it.
        click.echo(f"{result['id']}: {result['note']}", err=True)


@click.group("lists")
def lists_group() -> None:
    """Newsletter lists (schedule, time zone, sections, sender, subject)."""


@lists_group.command("put")
@click.argument("file", type=click.Path(dir_okay=False))
@handle_errors
def lists_put(file: str) -> None:
    """Create or replace a list from a JSON FILE (src/syndicate/schemas/newsletter.schema.json)."""
    from ..newsletter import lists
    from .articles import load_document

    config, created = lists.put_list(load_document(Path(file)))
    click.echo(f"{'created' if created else 'updated'} list {config['id']}")


@lists_group.command("list")
@handle_errors
def lists_list() -> None:
    """Every list with its schedule and subscriber counts."""
    import datetime as dt

    from ..newsletter import cron, lists

    now = dt.datetime.now(dt.timezone.utc)
    for config in lists.all_lists():
        counts = lists.counts(config["id"])
        nxt = cron.next_fire(config["schedule"], config["timezone"], now)
        click.echo(f"{config['id']:<20} {config['schedule']!r} {config['timezone']}  next {nxt:%Y-%m-%d %H:%MZ}  "
                   f"{counts['confirmed']} confirmed, {counts['pending']} pending")


@lists_group.command("show")
@click.argument("list_id")
@handle_errors
def lists_show(list_id: str) -> None:
    """One list's settings, its state and its subscriber counts, as JSON."""
    from ..newsletter import lists

    echo_json({**lists.get_list(list_id), "state": lists.list_state(list_id), "subscribers": lists.counts(list_id)})


@lists_group.command("remove")
@click.argument("list_id")
@click.confirmation_option(prompt="Delete the list and all its subscribers?")
@handle_errors
def lists_remove(list_id: str) -> None:
    """Delete a list and all its subscribers (asks first unless --yes)."""
    from ..newsletter import lists

    lists.delete_list(list_id)
    click.echo(f"deleted list {list_id}")


@click.group("subscribers")
def subscribers_group() -> None:
    """Subscribers of a newsletter list."""


@subscribers_group.command("add")
@click.argument("list_id")
@click.argument("emails", nargs=-1, required=True)
@handle_errors
def subscribers_add(list_id: str, emails: tuple[str, ...]) -> None:
    """Add confirmed subscribers (you vouch for their consent)."""
    from ..newsletter import lists

    for email in emails:
        record, outcome = lists.add_subscriber(list_id, email)
        click.echo(f"{record['email']}: {outcome}")


@subscribers_group.command("remove")
@click.argument("list_id")
@click.argument("emails", nargs=-1, required=True)
@handle_errors
def subscribers_remove(list_id: str, emails: tuple[str, ...]) -> None:
    """Unsubscribe addresses (they stay recorded as unsubscribed)."""
    from ..newsletter import lists

    for email in emails:
        record = lists.remove_subscriber(list_id, email)
        click.echo(f"{record['email']}: unsubscribed")


@subscribers_group.command("list")
@click.argument("list_id")
@click.option("--status", type=click.Choice(["pending", "confirmed", "unsubscribed"]), default=None,
              help="Only subscribers in this state (default: all).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@handle_errors
def subscribers_list(list_id: str, status: str | None, as_json: bool) -> None:
    """The subscribers of LIST_ID with their state, sorted by address."""
    from ..newsletter import lists

    lists.get_list(list_id)
    records = sorted(lists.iter_subscribers(list_id, status), key=lambda r: r["email"])
    if as_json:
        echo_json([{k: r.get(k) for k in ("email", "status", "created_at", "confirmed_at", "source")} for r in records])
        return
    for record in records:
        click.echo(f"{record['email']}\t{record['status']}")


@subscribers_group.command("import")
@click.argument("list_id")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False))
@handle_errors
def subscribers_import(list_id: str, csv_file: str) -> None:
    """Import CSV_FILE (a header row with an 'email' column) as confirmed subscribers."""
    from ..newsletter import lists

    with open(csv_file, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    if rows and "email" not in {k.strip().lower() for k in rows[0] if k}:
        raise ValidationFailed([Problem("$", f"{csv_file} needs a header row with an 'email' column")])
    rows = [{(k or "").strip().lower(): v for k, v in row.items()} for row in rows]
    with click.progressbar(length=len(rows), label=f"importing into {list_id}", file=sys.stderr) as bar:
        result = lists.import_rows(list_id, rows, on_row=lambda: bar.update(1))
    problems = result.pop("problems")
    click.echo(", ".join(f"{v} {k}" for k, v in result.items()))
    for problem in problems:
        click.echo(f"  row {problem['row']}: {problem['message']}", err=True)
    if result["invalid"]:
        sys.exit(2)


COMMANDS = [digest_group, lists_group, subscribers_group]
