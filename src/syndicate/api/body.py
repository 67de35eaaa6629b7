"""Reading a JSON request body with the limits every write endpoint shares.

415 for a non-JSON content type, 413 past SYNDICATE_MAX_BODY_BYTES (checked on
Content-Length and again while streaming, so a lying header cannot slip by),
400 for an empty body, invalid UTF-8, a byte order mark or malformed JSON, each
with a JSON error body.

JSON that parses can still be unusable, and Python's json module lets these
through or fails deep inside later code; each is refused here with 400 and a
``problems`` list naming the JSON path of every occurrence:

* a lone UTF-16 surrogate escape (``"\\ud800"``): it cannot be encoded as UTF-8,
  so storing or rendering it would fail;
* ``NaN``, ``Infinity`` and ``-Infinity`` (not JSON, RFC 8259 section 6) and
  numbers too large for a double (``1e400`` would silently become infinity);
* integers longer than Python converts (4300 digits);
* the same key twice in one object: RFC 8259 leaves the meaning open and
  parsers disagree on which value wins, so syndicate refuses rather than guess;
* nesting deeper than ``MAX_DEPTH`` levels, which would otherwise exhaust the
  recursion limit of the validators and serializers behind the endpoint.

An endpoint that takes an object (all of them today) also gets 422 for any
other top-level value, with the problem at ``$``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from ..config import get_settings
from ..errors import Problem, ValidationFailed
from ..schemas import json_path
from .errors import ApiError

# Articles nest about six levels; publisher extensions (x-…) get ten times that.
MAX_DEPTH = 64
# More problems than this are summarised: a hostile body can hold a million of them.
MAX_PROBLEMS = 50


class _Refused:
    """Stands in the parsed tree for a value that must be refused, so the walk can name its path."""

    def __init__(self, message: str) -> None:
        self.message = message


def _decode(text: str) -> tuple[Any, dict[int, list[str]], bool]:
    """Parse ``text``; also the duplicate keys of each object and whether any value was refused.

    Duplicates are noted per object (keyed by id: the objects stay alive in the tree)
    so the walk can name their paths; the parsed objects are plain dicts.
    """
    duplicates: dict[int, list[str]] = {}
    refused: list[_Refused] = []

    def refuse(message: str) -> _Refused:
        refused.append(_Refused(message))
        return refused[-1]

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        seen: list[str] = []
        for k, v in items:
            if k in out and k not in seen:
                seen.append(k)
            out[k] = v
        if seen:
            duplicates[id(out)] = seen
        return out

    def number(text: str) -> Any:
        value = float(text)
        if math.isinf(value):
            return refuse(f"the number {text[:40]} is too large for a double; send it as a string")
        return value

    def integer(text: str) -> Any:
        try:
            return int(text)
        except ValueError:  # past sys.get_int_max_str_digits
            return refuse(f"an integer of {len(text)} digits is too large; send it as a string")

    def constant(name: str) -> Any:
        return refuse(f"{name} is not a JSON number; send a number or null")

    doc = json.loads(text, object_pairs_hook=pairs, parse_float=number, parse_int=integer, parse_constant=constant)
    return doc, duplicates, bool(refused)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _path(trail: tuple[Any, ...] | None) -> str:
    parts: list[Any] = []
    while trail is not None:
        trail, part = trail
        parts.append(part)
    return json_path(parts[::-1])


def _problems(doc: Any, duplicates: dict[int, list[str]], check_strings: bool, check_values: bool) -> list[Problem]:
    """Walk the tree with an explicit stack (recursion is what deep bodies attack).

    Only containers go on the stack; each carries its path as a linked (parent, key)
    pair, made a string only for a problem. Strings are checked for surrogates only
    when the body holds a ``\\u`` escape, the one way JSON can carry them.
    """
    found: list[Problem] = []

    def scalar(value: Any, trail: Any) -> None:
        if isinstance(value, _Refused):
            found.append(Problem(_path(trail), value.message))
        elif check_strings and isinstance(value, str) and not _encodable(value):
            found.append(Problem(_path(trail), "holds a lone UTF-16 surrogate escape (\\ud800-\\udfff); "
                                               "send valid Unicode"))

    stack: list[tuple[Any, Any, int]] = [(doc, None, 0)]
    scalar(doc, None)
    while stack and len(found) < MAX_PROBLEMS:
        node, trail, depth = stack.pop()
        if not isinstance(node, (dict, list)):
            continue
        if depth >= MAX_DEPTH:
            found.append(Problem(_path(trail), f"nested deeper than {MAX_DEPTH} levels; flatten it"))
            continue
        if isinstance(node, dict):
            for k in duplicates.get(id(node), ()):
                found.append(Problem(_path((trail, k)), f"the key {json.dumps(k)} appears more than once "
                                                        "in this object; send it once"))
            items: Any = node.items()
        else:
            items = enumerate(node)
        children = []
        for k, v in items:
            if check_strings and isinstance(k, str) and not _encodable(k):
                found.append(Problem(_path((trail, k)), "the key holds a lone UTF-16 surrogate escape "
                                                        "(\\ud800-\\udfff); send valid Unicode"))
            if isinstance(v, (dict, list)):
                children.append((v, (trail, k), depth + 1))
            elif check_values:
                scalar(v, (trail, k))
        stack.extend(reversed(children))
    return found


def _safe_paths(found: list[Problem]) -> list[Problem]:
    # A path names the keys it passes through; a key with a lone surrogate must not make the
    # error body itself unencodable, so such characters are shown as their escape (\ud800).
    return [Problem(p.path.encode("utf-8", "backslashreplace").decode("utf-8"), p.message)
            if not _encodable(p.path) else p for p in found]


def parse_body(raw: bytes, *, want_object: bool = True) -> Any:
    """The checks of ``read_json`` once the body is read; pure, so it runs off the event loop."""
    if not raw.strip():
        raise ApiError(400, "empty_body", "the body is empty; send a JSON object")
    if raw.startswith(b"\xef\xbb\xbf"):
        raise ApiError(400, "malformed_json", "the body starts with a UTF-8 byte order mark, which JSON "
                                              "forbids (RFC 8259 section 8.1); send it without one")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_utf8", f"the body is not valid UTF-8 (byte {exc.start}); re-encode it as UTF-8") from None
    try:
        doc, duplicates, refused = _decode(text)
    except json.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json",
                       f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise ApiError(400, "invalid_json", f"the body is nested deeper than {MAX_DEPTH} levels; flatten it",
                       problems=[{"path": "$", "message": f"nested deeper than {MAX_DEPTH} levels"}]) from None
    escapes = "\\u" in text
    found = _problems(doc, duplicates, check_strings=escapes, check_values=escapes or refused)
    if found:
        shown = [p.as_dict() for p in _safe_paths(found)]
        more = " (the first {} are listed)".format(MAX_PROBLEMS) if len(found) >= MAX_PROBLEMS else ""
        raise ApiError(400, "invalid_json", f"the body is JSON that syndicate cannot accept; fix each path "
                                            f"listed and send again{more}", problems=shown)
    if want_object and not isinstance(doc, dict):
        raise ValidationFailed([Problem("$", "must be a JSON object")])
    return doc


async def read_json(request: Request, *, want_object: bool = True) -> Any:
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise ApiError(415, "unsupported_media_type",
                       f"send the body as JSON with 'Content-Type: application/json' (got {content_type or 'none'!r})")
    raw = await read_limited(request, get_settings().max_body_bytes)
    # Parsing a megabyte and walking it takes milliseconds: off the event loop, so other requests go on.
    return await run_in_threadpool(parse_body, raw, want_object=want_object)


async def read_limited(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 past ``limit`` bytes: checked on Content-Length and again while
    streaming, so neither a lying header nor a chunked body can make the server hold more."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "payload_too_large", f"the body is over the {limit}-byte limit; shorten it", limit=limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"the body is over the {limit}-byte limit; shorten it", limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)
