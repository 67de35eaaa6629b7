"""Entry point of the ``syndicate`` command: each concern registers its commands here."""

from __future__ import annotations

import click

from .. import __version__
from . import articles, digest, feeds, operations, partners, run


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="syndicate")
def cli() -> None:
    """Validate, publish and syndicate articles to feeds, newsletters and partner webhooks."""


for module in (articles, run, operations, feeds, partners, digest):
    for command in module.COMMANDS:
        cli.add_command(command)


def main() -> None:
    cli(prog_name="syndicate")


if __name__ == "__main__":
    main()
