"""Reading a JSON request body with the limits every write endpoint shares.

415 for a non-JSON content type, 413 past SYNDICATE_MAX_BODY_BYTES (checked on
Content-Length and again while streaming, so a lying header cannot slip by),
400 for invalid UTF-8 or malformed JSON, each with a JSON error body.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from ..config import get_settings
from .errors import ApiError


async def read_json(request: Request) -> Any:
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise ApiError(415, "unsupported_media_type",
                       f"send the body as JSON with 'Content-Type: application/json' (got {content_type or 'none'!r})")
    limit = get_settings().max_body_bytes
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
    raw = b"".join(chunks)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_utf8", f"the body is not valid UTF-8 (byte {exc.start}); re-encode it as UTF-8") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json",
                       f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
