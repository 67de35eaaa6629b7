"""Entry point of the ``syndicate`` command: each concern registers its commands here."""

from __future__ import annotations

import click

from .. import __version__
from . import articles, digest, feeds, operations, partners, run
from ..errors import SyndicateError
from .common import exit_on, store_errors


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
    except (SyndicateError, *store_errors()) as exc:
        exit_on(exc)


if __name__ == "__main__":
    main()
