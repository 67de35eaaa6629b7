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
    "newsletter digest and partner webhooks."
)


def create_app() -> FastAPI:
    app = FastAPI(title="syndicate", version=__version__, description=DESCRIPTION,
                  docs_url="/docs", redoc_url=None)
    errors.install(app)
    for module in (articles, feeds, partners, newsletters, metrics):
        app.include_router(module.router)

    @app.get("/healthz", tags=["operations"], summary="Is Redis reachable?")
    def healthz() -> JSONResponse:
        try:
            get_redis().ping()
        except Exception as exc:  # any failure means "not healthy", and says why
            return JSONResponse({"status": "unavailable", "redis": f"unreachable: {exc}"}, status_code=503)
        return JSONResponse({"status": "ok", "redis": "ok"})

    openapi.install(app)
    return app
