"""Shared CLI plumbing: error reporting and exit codes.

Exit codes: 0 success, 1 an operation failed (network, server), 2 bad input
(usage errors and invalid documents), each with a message that says what to do.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable

import click

from ..errors import ConfigError, SyndicateError, ValidationFailed

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def report_problems(source: str, exc: ValidationFailed) -> None:
    click.echo(f"{source}: invalid: {exc.message}", err=True)
    for problem in exc.problems:
        click.echo(f"  {problem.path}: {problem.message}", err=True)


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn SyndicateError into a clear message and the right exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ValidationFailed as exc:
            report_problems("input", exc)
            sys.exit(EXIT_BAD_INPUT)
        except ConfigError as exc:
            click.echo(f"error: {exc.message}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except SyndicateError as exc:
            click.echo(f"error: {exc.message}", err=True)
            sys.exit(EXIT_FAILED)

    return wrapper
