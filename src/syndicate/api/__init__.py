"""The HTTP API: ingest, articles, feeds, partners and newsletters.

``create_app()`` builds the FastAPI application; each concern is one router
module. Errors are answered as JSON ``{"error", "message", ...}`` bodies;
validation failures list every problem with its JSON path.
"""

from .app import create_app

__all__ = ["create_app", "served_app"]


def served_app():
    """``syndicate api``'s application factory, run in each server process.

    With ``--workers N`` uvicorn starts each process afresh (spawn), so logging (and tracing,
    when on) is set up here, in the process that serves, not only in the one that started it.
    """
    from .. import logs, telemetry

    logs.setup("INFO")
    return telemetry.traced_api() if telemetry.enabled() else create_app()
