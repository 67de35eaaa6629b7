"""Load the JSON Schemas shipped in this package and validate documents against them.

The ``*.schema.json`` files sit beside this module and install with the wheel as
package data (read through importlib.resources); ``SYNDICATE_SCHEMA_DIR`` points at
another folder of the same files instead.

Validators are built once per schema and check formats for real (date-time,
uri): jsonschema's format extras are a declared dependency, and a missing one
fails loudly here rather than silently accepting bad dates.
"""

from __future__ import annotations

import functools
from importlib import resources
import json
import os
import re
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError

from .. import dates
from ..errors import ConfigError, Problem, ValidationFailed

# None: the files shipped in this package.
SCHEMA_DIR: Path | None = Path(os.environ["SYNDICATE_SCHEMA_DIR"]) if os.environ.get("SYNDICATE_SCHEMA_DIR") else None

# Formats the article schema relies on; each needs its checker present.
_REQUIRED_FORMATS = ("date-time", "uri")


@functools.lru_cache(maxsize=None)
def load_schema(name: str) -> dict[str, Any]:
    """Return the parsed schema ``{name}.schema.json``."""
    filename = f"{name}.schema.json"
    if SCHEMA_DIR is None:
        source = resources.files(__package__).joinpath(filename)
    else:
        source = SCHEMA_DIR / filename
    try:
        return json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        where = "the syndicate package (reinstall it)" if SCHEMA_DIR is None else \
            f"{SCHEMA_DIR} (SYNDICATE_SCHEMA_DIR; unset it to use the schemas shipped with syndicate)"
        raise ConfigError(f"schema {filename} is missing from {where}") from None


@functools.lru_cache(maxsize=None)
def validator(name: str) -> Draft202012Validator:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    checker = Draft202012Validator.FORMAT_CHECKER
    missing = [f for f in _REQUIRED_FORMATS if f not in checker.checkers]
    if missing:
        raise ConfigError(
            f"format checkers {missing} are unavailable; install jsonschema[format] (pip install -e .)"
        )
    return Draft202012Validator(schema, format_checker=_format_checker(checker))


def _format_checker(default: FormatChecker) -> FormatChecker:
    # date-time is checked by the one parser every channel uses (syndicate.dates), so the
    # schema accepts exactly what the channels can handle; the other formats stay jsonschema's.
    checker = FormatChecker(formats=())
    checker.checkers = dict(default.checkers)
    checker.checks("date-time", raises=dates.DateError)(dates.is_valid)
    return checker


def json_path(parts: Any) -> str:
    """Turn jsonschema's absolute path into ``$.a.b[3].c`` notation."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}"
        else:
            out += "[" + json.dumps(part, ensure_ascii=False) + "]"
    return out


def _leaf_errors(error: ValidationError) -> list[ValidationError]:
    # allOf/if-then and $ref wrap the useful message one level down; report the leaves.
    if error.context:
        leaves: list[ValidationError] = []
        for sub in error.context:
            leaves.extend(_leaf_errors(sub))
        return leaves
    return [error]


def _unknown_keys(error: ValidationError) -> list[str]:
    schema, instance = error.schema, error.instance
    known = schema.get("properties", {})
    patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
    return [k for k in instance if k not in known and not any(p.search(k) for p in patterns)]


_JSON_TYPES = {
    dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "an integer", float: "a number",
    type(None): "null",
}
_TYPE_NAMES = {"object": "an object", "array": "an array", "string": "a string", "boolean": "a boolean",
               "integer": "an integer", "number": "a number", "null": "null"}
_FORMAT_MESSAGES = {
    "date-time": ("must be an RFC 3339 date-time with a time zone offset or Z, between 0001-01-02 and "
                  "9999-12-30 in UTC, e.g. 2026-11-25T09:30:00-05:00"),
    "uri": "must be an absolute URI",
}


def _preview(value: Any, limit: int = 60) -> str:
    # Messages quote the offending value, but a 20,000-character paragraph must not be echoed whole.
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _message(error: ValidationError) -> str:
    """A message a publisher can act on; jsonschema's own text quotes regexes and whole values."""
    kind, expected, value, schema = error.validator, error.validator_value, error.instance, error.schema
    if kind == "type":
        wanted = " or ".join(_TYPE_NAMES.get(t, t) for t in ([expected] if isinstance(expected, str) else expected))
        return f"must be {wanted}, not {_JSON_TYPES.get(type(value), type(value).__name__)}"
    if kind == "pattern" and schema.get("errorMessage"):
        return f"{schema['errorMessage']}; got {_preview(value)}"
    if kind == "pattern":
        hint = f": {schema['description']}" if schema.get("description") else ""
        return f"{_preview(value)} does not match {json.dumps(expected)}{hint}"
    if kind == "format" and expected in _FORMAT_MESSAGES:
        return f"{_FORMAT_MESSAGES[expected]}; got {_preview(value)}"
    if kind == "minLength":
        return "must not be empty" if expected == 1 else f"must have at least {_count(expected, 'character')}"
    if kind == "maxLength":
        return f"is {_count(len(value), 'character')} long; at most {expected} allowed"
    if kind == "minItems":
        return f"must have at least {_count(expected, 'item')}"
    if kind == "maxItems":
        return f"has {_count(len(value), 'item')}; at most {expected} allowed"
    if kind == "uniqueItems":
        seen: list[Any] = []
        dupes: list[str] = []
        for item in value:
            if item in seen and _preview(item) not in dupes:
                dupes.append(_preview(item))
            seen.append(item)
        return f"items must be unique; repeated: {', '.join(dupes)}" if dupes else "items must be unique"
    if kind == "enum":
        return f"must be one of {', '.join(_preview(v) for v in expected)}; got {_preview(value)}"
    if kind == "const":
        return f"must be {_preview(expected)}; got {_preview(value)}"
    if kind in ("minimum", "maximum"):
        word = "at least" if kind == "minimum" else "at most"
        return f"must be {word} {expected}; got {_preview(value)}"
    if kind == "required":
        # jsonschema reports one error per missing key; its message names the key.
        return error.message.replace(" is a required property", " is required")
    return error.message if len(error.message) <= 300 else error.message[:299] + "…"


def _problems_of(error: ValidationError) -> list[tuple[list[Any], Problem]]:
    path = list(error.absolute_path)
    if error.validator in ("unevaluatedProperties", "additionalProperties") and isinstance(error.instance, dict):
        unknown = _unknown_keys(error)
        if unknown:
            return [
                ([*path, key], Problem(json_path([*path, key]), "unknown field; remove it or prefix it with x- for a publisher extension"))
                for key in unknown
            ]
    return [(path, Problem(json_path(path), _message(error)))]


def _without_echoes(leaves: list[ValidationError]) -> list[ValidationError]:
    """Drop errors that only repeat another at the same path, so one fault is one problem.

    An empty string also fails the "not blank" pattern; a non-http URL usually also fails
    format "uri". The more specific message (minLength, the URL pattern) is the one kept.
    """
    kinds: dict[tuple[Any, ...], set[str]] = {}
    for leaf in leaves:
        kinds.setdefault(tuple(leaf.absolute_path), set()).add(str(leaf.validator))
    kept = []
    for leaf in leaves:
        seen = kinds[tuple(leaf.absolute_path)]
        if leaf.validator == "pattern" and leaf.instance == "" and "minLength" in seen:
            continue
        if leaf.validator == "format" and "pattern" in seen:
            continue
        kept.append(leaf)
    return kept


def _path_order(parts: list[Any]) -> tuple[tuple[int, int, str], ...]:
    # Natural order: blocks[2] before blocks[10], which a plain string sort gets wrong.
    return tuple((0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in parts)


@functools.lru_cache(maxsize=None)
def _fast_validator(name: str) -> Any:
    """jsonschema-rs, about 100x faster, answers "valid?"; the detailed report stays jsonschema's.

    The test suite runs every example and every bad-article case through
    ``problems``, so a disagreement between the two engines fails a test.
    """
    try:
        import jsonschema_rs
    except ImportError:  # optional speed-up
        return None
    try:
        return jsonschema_rs.Draft202012Validator(load_schema(name), validate_formats=True,
                                                  formats={"date-time": dates.is_valid})
    except Exception:  # a schema feature the fast engine lacks: use jsonschema alone
        return None


def problems(name: str, document: Any) -> list[Problem]:
    """Every way ``document`` breaks schema ``name``, sorted by path (array indexes numerically); empty when valid."""
    fast = _fast_validator(name)
    if fast is not None:
        try:
            if fast.is_valid(document):
                return []
        except Exception:  # values JSON cannot hold (Python objects): let jsonschema report them
            pass
    leaves = [leaf for error in validator(name).iter_errors(document) for leaf in _leaf_errors(error)]
    found: dict[Problem, list[Any]] = {}
    for leaf in _without_echoes(leaves):
        for parts, problem in _problems_of(leaf):
            found.setdefault(problem, parts)
    return sorted(found, key=lambda p: (_path_order(found[p]), p.message))


def validate(name: str, document: Any) -> None:
    """Raise ``ValidationFailed`` listing every problem of ``document`` against schema ``name``."""
    found = problems(name, document)
    if found:
        raise ValidationFailed(found)


def validate_article(article: Any) -> None:
    validate("article", article)
