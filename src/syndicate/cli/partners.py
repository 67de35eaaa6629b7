"""CLI commands of the partners concern."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
