"""The operator console (``/console``, admin sign-in) and the readers' newsletter pages.

Server-rendered Jinja2 (autoescape on), no script: every action is a plain form
POST carrying the session's CSRF token.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.responses import Response

from . import articles, auth, dashboard, feeds, newsletters, partners, readers
from .web import HERE, HtmlErrors

static = APIRouter(include_in_schema=False)


@static.get("/console/static/console.css")
def stylesheet() -> Response:
    # Public: the sign-in page needs it too. One small file, so no StaticFiles mount.
    css = (HERE / "static" / "console.css").read_bytes()
    return Response(css, media_type="text/css", headers={"Cache-Control": "public, max-age=300",
                                                        "X-Content-Type-Options": "nosniff"})


ROUTERS = (static, auth.router, dashboard.router, partners.router, newsletters.router, readers.router,
           articles.router, feeds.router)


def install(app: FastAPI) -> None:
    for router in ROUTERS:
        app.include_router(router)
    # Console errors as pages in the console's look (the API's handlers answer JSON everywhere else).
    app.add_middleware(HtmlErrors)
