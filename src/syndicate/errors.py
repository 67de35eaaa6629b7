"""The one exception hierarchy of syndicate.

    SyndicateError
    ├── ConfigError            a setting is missing or malformed
    ├── ValidationFailed       input broke the schema; carries every problem with its JSON path
    ├── NotFound               the thing named does not exist
    ├── Conflict               the request contradicts stored state (stale version, changed duplicate)
    └── DeliveryError          a channel could not hand something on (SMTP, HTTP)

Every error carries a message that says what to do next.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Problem:
    """One validation problem: where (a JSON path such as ``$.body.blocks[3].text``) and what."""

    path: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


class SyndicateError(Exception):
    """Base of every error syndicate raises on purpose."""

    code = "error"

    def __init__(self, message: str, **context: object) -> None:
        super().__init__(message)
        self.message = message
        self.context = context

    def as_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.code, "message": self.message}
        body.update({k: v for k, v in self.context.items() if v is not None})
        return body


class ConfigError(SyndicateError):
    code = "config_error"


class ValidationFailed(SyndicateError):
    code = "validation_failed"

    def __init__(self, problems: list[Problem], message: str | None = None) -> None:
        self.problems = problems
        count = len(problems)
        super().__init__(
            message or f"{count} problem{'s' if count != 1 else ''} found; fix each path listed and send again",
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "error": self.code,
            "message": self.message,
            "problems": [p.as_dict() for p in self.problems],
        }


class NotFound(SyndicateError):
    code = "not_found"


class Conflict(SyndicateError):
    code = "conflict"


class DeliveryError(SyndicateError):
    code = "delivery_error"
