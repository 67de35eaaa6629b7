"""Entry point of the ``syndicate`` command: each concern registers its commands here."""

from __future__ import annotations

import sys

import click

from .. import __version__
from . import articles, digest, feeds, operations, partners, run
from ..errors import ConfigError, SyndicateError
from .common import EXIT_BAD_INPUT, EXIT_FAILED, store_down_line, store_errors


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="syndicate")
def cli() -> None:
    """Validate, publish and syndicate articles to feeds, newsletters and partner webhooks."""


for module in (articles, run, operations, feeds, partners, digest):
    for command in module.COMMANDS:
        cli.add_command(command)


def main() -> None:
    # Commands not wrapped in handle_errors are covered here too: an unreachable store or a
    # malformed setting is one line and exit 1 (or 2) for every command, never a traceback.
    try:
        cli(prog_name="syndicate")
    except store_errors() as exc:
        click.echo(store_down_line(exc), err=True)
        sys.exit(EXIT_FAILED)
    except ConfigError as exc:
        # A malformed setting (a Redis or SMTP URL with a typo) is bad input: one line, exit 2.
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except SyndicateError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    main()
