"""CLI commands of the feeds concern."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
