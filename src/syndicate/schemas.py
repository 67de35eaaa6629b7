"""Load the JSON Schemas in ``schemas/`` and validate documents against them.

Validators are built once per schema and check formats for real (date-time,
uri): jsonschema's format extras are a declared dependency, and a missing one
fails loudly here rather than silently accepting bad dates.
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from .errors import ConfigError, Problem, ValidationFailed

SCHEMA_DIR = Path(os.environ.get("SYNDICATE_SCHEMA_DIR") or Path(__file__).resolve().parents[2] / "schemas")

# Formats the article schema relies on; each needs its checker present.
_REQUIRED_FORMATS = ("date-time", "uri")


@functools.lru_cache(maxsize=None)
def load_schema(name: str) -> dict[str, Any]:
    """Return the parsed schema ``schemas/{name}.schema.json``."""
    path = SCHEMA_DIR / f"{name}.schema.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"schema {path} is missing; set SYNDICATE_SCHEMA_DIR to the schemas/ folder") from None


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
    return Draft202012Validator(schema, format_checker=checker)


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


def _problems_of(error: ValidationError) -> list[Problem]:
    path = list(error.absolute_path)
    if error.validator in ("unevaluatedProperties", "additionalProperties") and isinstance(error.instance, dict):
        unknown = _unknown_keys(error)
        if unknown:
            return [
                Problem(json_path([*path, key]), "unknown field; remove it or prefix it with x- for a publisher extension")
                for key in unknown
            ]
    message = error.message
    if error.validator == "pattern" and error.schema.get("description"):
        message = f"{error.message}: {error.schema['description']}"
    return [Problem(json_path(path), message)]


def problems(name: str, document: Any) -> list[Problem]:
    """Every way ``document`` breaks schema ``name``, sorted by path; empty when valid."""
    found: set[Problem] = set()
    for error in validator(name).iter_errors(document):
        for leaf in _leaf_errors(error):
            found.update(_problems_of(leaf))
    return sorted(found, key=lambda p: (p.path, p.message))


def validate(name: str, document: Any) -> None:
    """Raise ``ValidationFailed`` listing every problem of ``document`` against schema ``name``."""
    found = problems(name, document)
    if found:
        raise ValidationFailed(found)


def validate_article(article: Any) -> None:
    validate("article", article)
