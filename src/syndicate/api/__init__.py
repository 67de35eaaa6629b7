"""The HTTP API: ingest, articles, feeds, partners and newsletters.

``create_app()`` builds the FastAPI application; each concern is one router
module. Errors are answered as JSON ``{"error", "message", ...}`` bodies;
validation failures list every problem with its JSON path.
"""

from .app import create_app

__all__ = ["create_app"]
