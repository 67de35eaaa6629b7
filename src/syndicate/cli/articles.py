"""``syndicate validate`` and ``syndicate publish``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ..config import get_settings
from ..errors import Problem, ValidationFailed
from ..schemas import problems
from .common import EXIT_BAD_INPUT, EXIT_FAILED, handle_errors, report_problems


def expand(paths: tuple[str, ...]) -> list[Path]:
    """Files as given; a directory stands for the *.json files in it."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(path.glob("*.json"))
            if not found:
                raise ValidationFailed([Problem("$", f"no *.json files in directory {path}")])
            out.extend(found)
        else:
            out.append(path)
    return out


class _Refused(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _Refused(f"the key {json.dumps(k)} appears twice in one object; keep one")
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _Refused(f"the number {text[:40]} is too large for a double")
    return value


def load_document(path: Path) -> Any:
    """Parse ``path`` as JSON; a read or parse failure is a ValidationFailed at ``$``.

    The API's body rules (syndicate.api.body) hold here too, so a file the API would
    refuse is refused before it reaches Redis: duplicate keys, NaN and Infinity,
    numbers beyond a double, lone surrogate escapes, absurd nesting. They are
    restated here rather than imported because the CLI must not load FastAPI.
    """
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"), object_pairs_hook=_no_duplicates,
                         parse_constant=_no_constant, parse_float=_finite)
        json.dumps(doc, ensure_ascii=False).encode("utf-8")
        return doc
    except FileNotFoundError:
        raise ValidationFailed([Problem("$", f"no such file: {path}")]) from None
    except UnicodeDecodeError as exc:
        raise ValidationFailed([Problem("$", f"not valid UTF-8 at byte {exc.start}")]) from None
    except UnicodeEncodeError:
        raise ValidationFailed([Problem("$", "holds a lone UTF-16 surrogate escape (\\ud800-\\udfff)")]) from None
    except json.JSONDecodeError as exc:
        raise ValidationFailed([Problem("$", f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")]) from None
    except RecursionError:
        raise ValidationFailed([Problem("$", "nested too deep to read")]) from None
    except ValueError as exc:  # _Refused, or an integer past Python's 4300-digit limit
        raise ValidationFailed([Problem("$", str(exc))]) from None


def load_article(path: Path) -> dict[str, Any]:
    article = load_document(path)
    found = problems("article", article)
    if found:
        raise ValidationFailed(found)
    return article


@click.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path())
def validate_cmd(files: tuple[str, ...]) -> None:
    """Check article FILES against src/syndicate/schemas/article.schema.json; list every problem with its path."""
    bad = 0
    try:
        paths = expand(files)
    except ValidationFailed as exc:
        report_problems("input", exc)
        sys.exit(EXIT_BAD_INPUT)
    for path in paths:
        try:
            load_article(path)
        except ValidationFailed as exc:
            bad += 1
            report_problems(str(path), exc)
        else:
            click.echo(f"{path}: valid")
    if bad:
        click.echo(f"{bad} invalid file(s); fix the paths listed above and run again", err=True)
        sys.exit(EXIT_BAD_INPUT)


def _publish_direct(article: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    from .. import events
    from syndicate.workers.ingest import enqueue_fanout

    result = events.ingest(article)
    if result.outcome == "event":
        enqueue_fanout(result.event_id or "")
        return "accepted", result.as_dict()
    if result.outcome == "duplicate":
        return "duplicate", result.as_dict()
    return "conflict", {"error": result.outcome, "message": result.reason}


def _publish_http(session: Any, api: str, token: str | None, article: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = session.post(f"{api.rstrip('/')}/v1/articles", data=json.dumps(article).encode(), headers=headers, timeout=30)
    try:
        body = response.json()
    except ValueError:
        body = {"message": response.text[:500]}
    if response.status_code == 202:
        return "accepted", body
    if response.status_code == 200:
        return "duplicate", body
    if response.status_code in (409, 422):
        return "conflict" if response.status_code == 409 else "rejected", body
    return "failed", {"message": f"HTTP {response.status_code}: {body.get('message', body)}"}


@click.command("publish")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--api", "api", envvar="SYNDICATE_API", help="Post to this syndicate API (e.g. http://127.0.0.1:8000) instead of writing to Redis directly.")
@click.option("--token", envvar="SYNDICATE_API_TOKEN", help="Ingest bearer token for --api (default: $SYNDICATE_API_TOKEN).")
@handle_errors
def publish_cmd(files: tuple[str, ...], api: str | None, token: str | None) -> None:
    """Validate and publish article FILES (or directories of *.json); prints a summary."""
    paths = expand(files)
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0, "conflict": 0, "failed": 0}
    lines: list[str] = []
    session = None
    if api:
        import requests

        session = requests.Session()
    # Run beside a `syndicate run`, the ingest token comes from its secrets like the Redis URL does.
    token = token or get_settings().api_token
    show_bar = len(paths) > 1
    with click.progressbar(paths, label="publishing", file=sys.stderr, show_pos=True) if show_bar else _nullbar(paths) as bar:
        for path in bar:
            try:
                article = load_article(path)
            except ValidationFailed as exc:
                counts["rejected"] += 1
                lines.append(f"{path}: rejected: " + "; ".join(f"{p.path}: {p.message}" for p in exc.problems))
                continue
            try:
                if session is not None:
                    outcome, body = _publish_http(session, api or "", token, article)
                else:
                    outcome, body = _publish_direct(article)
            except OSError as exc:
                outcome, body = "failed", {"message": f"{exc}; is the API running at {api}?"}
            counts[outcome] += 1
            if outcome in ("accepted", "duplicate"):
                lines.append(f"{path}: {outcome} {body.get('type') or ''} {body.get('event_id')}".rstrip())
            else:
                detail = body.get("message", "")
                if body.get("problems"):
                    detail = "; ".join(f"{p['path']}: {p['message']}" for p in body["problems"])
                lines.append(f"{path}: {outcome}: {detail}")
    for line in lines:
        click.echo(line)
    summary = ", ".join(f"{n} {name}" for name, n in counts.items() if n or name in ("accepted", "duplicate", "rejected"))
    click.echo(f"summary: {summary}")
    if counts["failed"]:
        sys.exit(EXIT_FAILED)
    if counts["rejected"] or counts["conflict"]:
        sys.exit(EXIT_BAD_INPUT)


class _nullbar:
    def __init__(self, items: list[Path]) -> None:
        self.items = items

    def __enter__(self) -> list[Path]:
        return self.items

    def __exit__(self, *exc: object) -> None:
        return None


COMMANDS = [validate_cmd, publish_cmd]
