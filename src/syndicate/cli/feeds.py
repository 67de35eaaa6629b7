"""CLI commands of the feeds concern: ``syndicate feeds list``, ``rebuild`` and ``mirror``."""

from __future__ import annotations

from pathlib import Path

import click

from .common import echo_json, handle_errors


@click.group("feeds")
def feeds_group() -> None:
    """The RSS, Atom and JSON feeds: list them, rebuild them from stored articles."""


@feeds_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@handle_errors
def feeds_list(as_json: bool) -> None:
    """Every feed: items, last update, renders, URLs, and any error writing its static files."""
    from ..config import get_settings
    from ..feeds import FORMATS, feed_spec, index, state
    from ..store import get_redis

    client, settings = get_redis(), get_settings()
    rows = []
    for feed_id in index.feed_ids(client):
        spec = feed_spec(feed_id, settings, index.section_name(client, feed_id))
        info = state.status(client, feed_id)
        rows.append({"id": feed_id, "title": spec.title, "items": int(info["items"] or 0),
                     "updated": info["updated"], "renders": int(info["renders"] or 0),
                     "changes": info["changes"], "stale": int(info["gen"] or 0) < int(info["changes"]),
                     "urls": {fmt: spec.url(fmt) for fmt in FORMATS},
                     "file": str(settings.feed_dir / spec.path("rss"))[:-4] + ".{rss,atom,json}",
                     "file_error": info["file_error"],
                     "file_error_since": float(info["file_error_at"]) if info["file_error_at"] else None})
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        flag = "  (stale: a render is due)" if row["stale"] else ""
        click.echo(f"{row['id']:<32} {row['items']:>4} items  updated {row['updated'] or '-':<26} "
                   f"renders {row['renders']}{flag}")
        click.echo(f"    {row['urls']['rss']}")
        if row["file_error"]:
            click.echo(f"    files not written (served from Redis; retried every sweep): {row['file_error']}")


@feeds_group.command("rebuild")
@click.option("--feed", "feed_ids", multiple=True, metavar="ID",
              help="Only this feed (e.g. all, sections/us); repeatable. Default: every feed.")
@handle_errors
def feeds_rebuild(feed_ids: tuple[str, ...]) -> None:
    """Re-index every feed from the stored articles and render it again, with progress."""
    from ..feeds import index, service
    from ..store import get_redis

    client = get_redis()
    index.discover_sections(client)
    targets = list(feed_ids) or index.feed_ids(client)
    known = set(index.feed_ids(client))
    unknown = [f for f in targets if f not in known]
    if unknown:
        raise click.BadParameter(f"unknown feed(s): {', '.join(unknown)}; see `syndicate feeds list`",
                                 param_hint="--feed")
    with click.progressbar(length=len(targets), label="Rebuilding feeds", file=click.get_text_stream("stderr")) as bar:
        def step(_feed_id: str) -> None:
            bar.update(1)
        done = service.rebuild(targets, progress=step)
    click.echo(f"rebuilt {len(done)} feed(s)")


COMMANDS: list[click.Command] = [feeds_group]


@feeds_group.command("mirror")
@click.argument("directory", type=click.Path(file_okay=False, writable=True, path_type=Path))
@click.option("--once", is_flag=True, help="Write every feed once and exit instead of following changes.")
@handle_errors
def feeds_mirror(directory: Path, once: bool) -> None:
    """Keep DIRECTORY's feed files identical to the stored feeds, following every change.

    Run one per web host beside nginx (serve DIRECTORY at /feeds/): the workers then need
    no shared disk. It writes every feed at start and after any gap (store unreachable,
    too far behind), then only the feeds that change; each file is replaced atomically.
    Stops on Ctrl-C or SIGTERM.
    """
    import signal
    import threading

    from ..feeds import mirror

    directory = directory.resolve()
    if once:
        feeds, changed = mirror.mirror_once(directory)
        click.echo(f"{feeds} feeds under {directory}: {changed} files written")
        return
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    click.echo(f"mirroring feeds into {directory} (Ctrl-C stops)")
    mirror.Mirror(directory, stop=stop, on_sync=lambda line: click.echo(line)).run()
    click.echo("mirror stopped")
