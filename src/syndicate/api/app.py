"""The FastAPI application factory."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

from .. import __version__, console
from ..logs import AccessLog
from ..store import get_redis
from . import articles, errors, feeds, metrics, newsletters, openapi, partners
from .feedcache import FeedCache, FeedFastPath

DESCRIPTION = (
    "Publishing systems post articles here; syndicate validates them against "
    "src/syndicate/schemas/article.schema.json, records them and fans them out to feeds, the "
    "newsletter digest and partner webhooks.\n\n"
    "Every JSON body must be UTF-8 JSON (RFC 8259) without a byte order mark. Bodies that parse but "
    "cannot be handled faithfully are refused with 400 and every problem's JSON path: the same key twice "
    "in one object (parsers disagree on which value wins), NaN or Infinity, numbers beyond a double or "
    "integers over 4300 digits, lone UTF-16 surrogate escapes, and nesting deeper than 64 levels.\n\n"
    "When the data store is unreachable every endpoint answers 503 with a Retry-After header."
)


def create_app() -> FastAPI:
    # The docs page loads Swagger UI from files the fastapi-offline package ships, served here
    # under /docs/assets: it works behind a firewall, and no CDN sees who reads the docs. No
    # validatorUrl: Swagger UI would otherwise send the API description to validator.swagger.io.
    app = FastAPIOffline(title="syndicate", version=__version__, description=DESCRIPTION,
                         docs_url="/docs", redoc_url=None, static_url="/docs/assets",
                         swagger_ui_parameters={"validatorUrl": None})
    # Inside the access log: a feed poll answered from this process's cache is still logged.
    app.state.feed_cache = FeedCache()
    app.add_middleware(FeedFastPath, cache=app.state.feed_cache)
    app.add_middleware(AccessLog)
    errors.install(app)
    for module in (articles, feeds, partners, newsletters, metrics):
        app.include_router(module.router)
    console.install(app)  # the operators' console and the readers' pages

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

    @app.get("/readyz", tags=["operations"], summary="Can this deployment do its work now?",
             responses={503: {"description": "A check failed (store, broker or workers); each is listed. "
                                             "Retry after the Retry-After header"}})
    def readyz() -> JSONResponse:
        checks = {"store": _check(_store), "broker": _check(_broker)}
        checks["workers"] = _check(_workers) if checks["store"]["ok"] else \
            {"ok": False, "message": "unknown: the store holding the heartbeats is unreachable"}
        if all(check["ok"] for check in checks.values()):
            return JSONResponse({"status": "ok", "checks": checks})
        failed = ", ".join(name for name, check in checks.items() if not check["ok"])
        # The store down is the same error every other endpoint reports then; anything else is "not ready".
        code = "not_ready" if checks["store"]["ok"] else "store_unavailable"
        return JSONResponse(
            {"error": code, "message": f"not ready: {failed}; retry in {errors.RETRY_AFTER_SECONDS} seconds",
             "status": "unavailable", "checks": checks},
            status_code=503, headers={"Retry-After": str(errors.RETRY_AFTER_SECONDS)})

    openapi.install(app)
    return app


def _check(probe) -> dict:
    try:
        return {"ok": True, **probe()}
    except NotReady as exc:
        return {"ok": False, "message": str(exc), **exc.details}
    except Exception as exc:  # any failure means "not ready", and says why
        return {"ok": False, "message": f"unreachable ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"}


class NotReady(Exception):
    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.details = details


def _store() -> dict:
    get_redis().ping()
    return {}


def _broker() -> dict:
    # Through kombu, as the API enqueues: opening a channel pings the broker with the transport's
    # own options. No retry: a readiness probe reports now, and is asked again.
    from syndicate.workers.app import app as celery

    with celery.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=3)
        client = getattr(connection.default_channel, "client", None)
        if hasattr(client, "ping"):  # Redis; on RabbitMQ the channel opened is the answer
            client.ping()
    return {"transport": connection.transport.driver_type}


def _workers() -> dict:
    from syndicate.workers.app import QUEUES

    from ..instance import HEARTBEAT_MAX_AGE, live_workers

    live = live_workers(get_redis())
    # A heartbeat that names no queues comes from a worker on the default, every queue.
    served = {queue for worker in live.values() for queue in (worker["queues"] or QUEUES)}
    missing = [queue for queue in QUEUES if queue not in served]
    if not live:
        raise NotReady(f"no worker heartbeat in the last {HEARTBEAT_MAX_AGE:.0f} s; start `syndicate worker`",
                       workers={})
    if missing:
        raise NotReady(f"no live worker consumes {', '.join(missing)}; start `syndicate worker -Q "
                       f"{','.join(missing)}`", workers=live)
    return {"workers": live}
