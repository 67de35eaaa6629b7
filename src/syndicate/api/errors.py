"""API error responses: one JSON shape for every 4xx and 5xx.

When the store (Redis, also the broker) cannot be reached, is still loading its
data, refuses writes or is full, every endpoint answers 503 with Retry-After and
the JSON body, whichever route met the error: the client retries later, and
nothing half-done is reported as a server bug.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import Conflict, ConfigError, NotFound, SyndicateError, ValidationFailed
from ..schemas import json_path
from ..store import unavailable_errors


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: object):
        super().__init__(message)
        self.status, self.code, self.message, self.headers, self.extra = status, code, message, headers, extra

    def response(self) -> JSONResponse:
        body = {"error": self.code, "message": self.message, **self.extra}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


_STATUS = {ValidationFailed: 422, NotFound: 404, Conflict: 409, ConfigError: 500}

log = logging.getLogger("syndicate.api")

RETRY_AFTER_SECONDS = 5


def store_unavailable(exc: Exception) -> JSONResponse:
    """503 + Retry-After for an unreachable store; the detail is logged, not shown to clients."""
    log.warning("store unavailable: %s: %s", type(exc).__name__, exc)
    return JSONResponse(
        {"error": "store_unavailable",
         "message": f"the data store is unavailable ({type(exc).__name__}); retry in {RETRY_AFTER_SECONDS} seconds",
         "retry_after": RETRY_AFTER_SECONDS},
        status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    async def _store_down(_request: Request, exc: Exception) -> JSONResponse:
        return store_unavailable(exc)

    for cls in unavailable_errors():
        app.add_exception_handler(cls, _store_down)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        # Starlette still logs the traceback; the client gets the JSON shape, not bare text.
        return JSONResponse({"error": "internal_error", "message": "unexpected server error; it was logged, "
                             "retry later or report it"}, status_code=500)

    @app.exception_handler(SyndicateError)
    async def _syndicate_error(_request: Request, exc: SyndicateError) -> JSONResponse:
        status = next((code for cls, code in _STATUS.items() if isinstance(exc, cls)), 400)
        return JSONResponse(exc.as_dict(), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"path": json_path([p for p in err.get("loc", ())[1:]]), "message": err.get("msg", "invalid")}
            for err in exc.errors()
        ]
        return JSONResponse(
            {"error": "validation_failed", "message": "fix each path listed and send again", "problems": problems},
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"error": code, "message": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))
