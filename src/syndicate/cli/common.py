"""Shared CLI plumbing: error reporting and exit codes.

Exit codes: 0 success, 1 an operation failed (network, server), 2 bad input
(usage errors and invalid documents), each with a message that says what to do.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable, NoReturn
from urllib.parse import urlsplit, urlunsplit

import click

from ..errors import ConfigError, SyndicateError, ValidationFailed

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def store_errors() -> tuple[type[Exception], ...]:
    """Errors that mean Redis (the store and broker) is unreachable, loading, read-only or full."""
    from ..store import unavailable_errors

    return unavailable_errors()


def shown_url(url: str) -> str:
    # The URL may carry a password; the message names the host, never the secret.
    if ";" in url:  # Sentinels: sentinel://...;sentinel://..., each may carry it
        return ";".join(shown_url(part) for part in url.split(";"))
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def store_down_line(exc: BaseException) -> str:
    """One line that says what failed and what to do."""
    from kombu.exceptions import OperationalError

    from ..config import get_settings

    settings = get_settings()
    reason = " ".join(str(exc).split())[:200] or type(exc).__name__
    if isinstance(exc, OperationalError) and settings.broker_is_amqp:
        return (f"error: RabbitMQ at {shown_url(settings.broker_url or '')} is unavailable ({reason}); start it or "
                "point SYNDICATE_BROKER_URL at a running RabbitMQ, then run the command again")
    url = settings.redis_url or "(SYNDICATE_REDIS_URL not set)"
    return (f"error: Redis at {shown_url(url)} is unavailable ({reason}); start it or point "
            "SYNDICATE_REDIS_URL at a running Redis, then run the command again")


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def report_problems(source: str, exc: ValidationFailed) -> None:
    click.echo(f"{source}: invalid: {exc.message}", err=True)
    for problem in exc.problems:
        click.echo(f"  {problem.path}: {problem.message}", err=True)


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn SyndicateError and an unreachable store into a clear message and the right exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (SyndicateError, *store_errors()) as exc:
            exit_on(exc)

    return wrapper


def exit_on(exc: BaseException) -> NoReturn:
    """Report ``exc`` in a line (or its problems) on stderr and exit with the code it means:
    1 for an operation that failed (the store unreachable included), 2 for bad input or a
    malformed setting."""
    if isinstance(exc, store_errors()):
        click.echo(store_down_line(exc), err=True)
        sys.exit(EXIT_FAILED)
    if isinstance(exc, ValidationFailed):
        report_problems("input", exc)
        sys.exit(EXIT_BAD_INPUT)
    click.echo(f"error: {getattr(exc, 'message', exc)}", err=True)
    sys.exit(EXIT_BAD_INPUT if isinstance(exc, ConfigError) else EXIT_FAILED)
