"""CLI commands of the digest concern."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
