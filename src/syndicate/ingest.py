"""Decide what an incoming article means, given what is stored (pure).

    no stored version                      -> article.published
    higher version                         -> article.updated
    same version, same content             -> duplicate (answer with the first event's id)
    same version, different content        -> conflict (409)
    lower version                          -> stale (409)
    status "retracted" (new or higher)     -> article.retracted

The comparison of content uses a digest of the canonical JSON, so key order and
whitespace in the request never make a duplicate look like a change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Literal

PUBLISHED = "article.published"
UPDATED = "article.updated"
RETRACTED = "article.retracted"
EVENT_TYPES = (PUBLISHED, UPDATED, RETRACTED)

Outcome = Literal["event", "duplicate", "stale", "conflict"]


def normalize(document: Any) -> Any:
    """Integral floats become ints: JSON Schema counts 2.0 as an integer, and storing
    "version": 2.0 would make it a float everywhere downstream."""
    if isinstance(document, dict):
        # Strings are most of an article: they are kept as they are without a call each.
        return {k: v if type(v) is str else normalize(v) for k, v in document.items()}
    if isinstance(document, list):
        return [v if type(v) is str else normalize(v) for v in document]
    if isinstance(document, float) and document.is_integer() and abs(document) <= 2**53:
        return int(document)
    return document


def canonical_json(document: Any) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(document: Any) -> str:
    return digest_of(canonical_json(document))


def digest_of(canonical: str | bytes) -> str:
    """The digest of a document already in canonical JSON (the form the store keeps), or of its UTF-8."""
    return hashlib.sha256(canonical if isinstance(canonical, bytes) else canonical.encode("utf-8")).hexdigest()


@dataclasses.dataclass(frozen=True)
class Stored:
    """What the store knows of an article's current version."""

    version: int
    digest: str
    event_id: str
    status: str


@dataclasses.dataclass(frozen=True)
class Decision:
    outcome: Outcome
    event_type: str | None = None
    reason: str | None = None


def decide(stored: Stored | None, version: int, content_digest: str, status: str) -> Decision:
    retracted = status == "retracted"
    if stored is None:
        return Decision("event", RETRACTED if retracted else PUBLISHED)
    if version < stored.version:
        return Decision(
            "stale",
            reason=f"version {version} is older than the stored version {stored.version}; send a version above {stored.version}",
        )
    if version == stored.version:
        if content_digest == stored.digest:
            return Decision("duplicate")
        return Decision(
            "conflict",
            reason=f"version {version} is already stored with different content; raise the version to {version + 1} to update",
        )
    if retracted:
        return Decision("event", RETRACTED)
    return Decision("event", UPDATED)
