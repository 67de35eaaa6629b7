"""Ingest: ``POST /v1/articles``, ``GET`` and ``DELETE /v1/articles/{id}``."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from .. import events
from ..errors import NotFound
from ..schemas import validate_article
from .auth import require_ingest_token
from .body import read_json
from .errors import ApiError
from .metrics import INGESTED
from .openapi import json_body

log = logging.getLogger("syndicate.api")
router = APIRouter(tags=["articles"])

ARTICLE_ID = Path(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$", description="The article's stable id.")


def _enqueue(event_id: str) -> None:
    # Imported here: the API module loads without a broker for `syndicate validate`.
    from syndicate.workers.ingest import enqueue_fanout

    try:
        enqueue_fanout(event_id)
    except Exception:
        # The event is logged; the reconciler fans it out once the broker is back.
        log.exception("could not enqueue %s; the reconciler will retry", event_id)


def _answer(result: events.IngestResult) -> JSONResponse:
    INGESTED.labels(result.outcome).inc()
    log.info("article %s v%s: %s", result.article_id, result.version, result.event_type or result.outcome,
             extra={"event_id": result.event_id, "article_id": result.article_id, "outcome": result.outcome})
    if result.outcome == "event":
        _enqueue(result.event_id or "")
        return JSONResponse(result.as_dict(), status_code=202)
    if result.outcome == "duplicate":
        return JSONResponse(result.as_dict(), status_code=200)
    raise ApiError(409, result.outcome, result.reason or "conflict", article_id=result.article_id, version=result.version)


@router.post(
    "/v1/articles",
    dependencies=[Depends(require_ingest_token)],
    summary="Publish, update or retract an article",
    status_code=202,
    openapi_extra=json_body("article", "Article", "The article; see src/syndicate/schemas/article.schema.json."),
    responses={200: {"description": "Duplicate: same id, version and content; nothing enqueued"},
               202: {"description": "Accepted: the event was logged and queued"},
               400: {"description": "Malformed JSON or invalid UTF-8"},
               401: {"description": "Missing or wrong bearer token"},
               409: {"description": "Stale version, or same version with different content"},
               413: {"description": "Body over the size limit"},
               415: {"description": "Not JSON"},
               422: {"description": "Invalid article: every problem with its JSON path"}},
)
async def post_article(request: Request) -> JSONResponse:
    article = await read_json(request)
    validate_article(article)
    return await run_in_threadpool(lambda: _answer(events.ingest(article)))


@router.get("/v1/articles/{article_id}", summary="The stored version of an article",
            description="The article as last stored. Once nothing needs a story whole any more (it left every "
                        "feed window, no edition waits for it, its events passed SYNDICATE_EVENT_RETENTION_DAYS), "
                        "only its version record remains: `id`, `version`, `status`, `headline`, `url`, `section`, "
                        "`datePublished` and `dateModified`, marked `\"bodyKept\": false` (200, not 404: the story "
                        "existed; resending its version is still a duplicate, an older one still stale).",
            dependencies=[Depends(require_ingest_token)])
def get_article(article_id: str = ARTICLE_ID) -> JSONResponse:
    article = events.get_article(article_id)
    if article is None:
        raise NotFound(f"no article with id {article_id!r}")
    return JSONResponse(article)


@router.delete("/v1/articles/{article_id}", summary="Retract an article", status_code=202,
               dependencies=[Depends(require_ingest_token)])
def delete_article(article_id: str = ARTICLE_ID) -> JSONResponse:
    return _answer(events.retract(article_id))
