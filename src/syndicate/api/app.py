"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from .. import __version__
from ..store import get_redis
from . import articles, errors, feeds, metrics, newsletters, openapi, partners

DESCRIPTION = (
    "Publishing systems post articles here; syndicate validates them against "
    "schemas/article.schema.json, records them and fans them out to feeds, the "
    "newsletter digest and partner webhooks.\n\n"
    "Every JSON body must be UTF-8 JSON (RFC 8259) without a byte order mark. Bodies that parse but "
    "cannot be handled faithfully are refused with 400 and every problem's JSON path: the same key twice "
    "in one object (parsers disagree on which value wins), NaN or Infinity, numbers beyond a double or "
    "integers over 4300 digits, lone UTF-16 surrogate escapes, and nesting deeper than 64 levels.\n\n"
    "When the data store is unreachable every endpoint answers 503 with a Retry-After header."
)


def create_app() -> FastAPI:
    app = FastAPI(title="syndicate", version=__version__, description=DESCRIPTION,
                  docs_url="/docs", redoc_url=None)
    errors.install(app)
    for module in (articles, feeds, partners, newsletters, metrics):
        app.include_router(module.router)

    @app.get("/healthz", tags=["operations"], summary="Is Redis reachable?",
             responses={503: {"description": "Redis is unreachable; retry after the Retry-After header"}})
    def healthz() -> JSONResponse:
        try:
            get_redis().ping()
        except Exception as exc:  # any failure means "not healthy", and says why
            return JSONResponse(
                {"error": "store_unavailable", "message": f"Redis is unreachable ({type(exc).__name__}); retry in "
                 f"{errors.RETRY_AFTER_SECONDS} seconds", "status": "unavailable", "redis": f"unreachable: {exc}"},
                status_code=503, headers={"Retry-After": str(errors.RETRY_AFTER_SECONDS)})
        return JSONResponse({"status": "ok", "redis": "ok"})

    openapi.install(app)
    return app
