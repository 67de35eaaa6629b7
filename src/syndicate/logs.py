"""Logging for the long-running parts (API, workers, beat): JSON lines or plain text.

``SYNDICATE_LOG_FORMAT=json`` writes one JSON object per line (time, level, logger,
message, and whatever ids the call passed with ``extra=``: event_id, article_id,
delivery_id, edition_id, outcome, duration_ms, ...); anything else but ``text`` is
refused. Plain text is the default, for a person reading a terminal or a log file.
Records, Python warnings among them, go to stderr. Celery prints a start-up banner
and a few notices for a person at a terminal ("worker: Warm shutdown") straight to
stdout, outside logging; in JSON mode the banner is turned off (``syndicate worker``
and ``beat`` pass ``--quiet``), and stderr carries nothing but JSON lines.

The JSON side uses python-json-logger rather than a hand-written formatter: it
already turns every ``extra=`` field into a key, renders exceptions and stack
traces, and falls back to ``str()`` for values JSON cannot hold, which is what a
formatter of our own would have to grow into.

A quiet system keeps a quiet log: Celery logs every task's "received" and
"succeeded" lines, and beat every "Sending due task", at INFO; with beat ticking
the webhook drain every second that would be several lines a second saying
nothing. Those records are demoted to DEBUG here (``--loglevel DEBUG`` shows them
again); the task base class (syndicate/workers/base.py) logs one outcome line per task
instead, with the ids, and at DEBUG for a periodic task that found nothing to do.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from .errors import ConfigError

FORMATS = ("text", "json")
# The ids a line carries under their own key when it is about one (see syndicate/workers/base.py too).
ID_FIELDS = ("event_id", "article_id", "delivery_id", "edition_id")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Loggers whose INFO records are routine per-task chatter, and the message each demoted
# record starts with (None: every INFO record of that logger).
_DEMOTED = {
    "celery.worker.strategy": None,  # "Task ... received"
    "celery.app.trace": None,  # "Task ... succeeded in ...", "Task ... retry: ..."; errors stay
    "celery.beat": "Scheduler: Sending due task",  # "beat: Starting..." stays
}


def log_format() -> str:
    value = os.environ.get("SYNDICATE_LOG_FORMAT", "").strip().lower() or "text"
    if value not in FORMATS:
        raise ConfigError(f"SYNDICATE_LOG_FORMAT must be 'text' or 'json', got {value!r}")
    return value


class _Demote(logging.Filter):
    """Turns a routine INFO record into a DEBUG one, so handlers at INFO drop it."""

    def __init__(self, prefix: str | None) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and (self.prefix is None or str(record.msg).startswith(self.prefix)):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def formatter(fmt: str | None = None) -> logging.Formatter:
    if (fmt or log_format()) == "json":
        from pythonjsonlogger.core import RESERVED_ATTRS
        from pythonjsonlogger.json import JsonFormatter

        # uvicorn adds the message again with terminal colour codes ("color_message"): not a field.
        return JsonFormatter("%(levelname)s %(name)s %(message)s", timestamp="time",
                             rename_fields={"levelname": "level", "name": "logger"}, json_ensure_ascii=False,
                             reserved_attrs=[*RESERVED_ATTRS, "color_message"])
    text = logging.Formatter(TEXT_FORMAT)
    text.converter = time.gmtime  # the same UTC clock as the JSON lines and every stored timestamp
    return text


def setup(level: int | str = logging.INFO) -> None:
    """Send every record at ``level`` or above to stderr in the configured format.

    Safe to call twice (``syndicate worker`` does, then Celery's setup_logging signal):
    the handler installed before is replaced, never doubled.
    """
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
        if not isinstance(level, int):
            raise ConfigError(f"unknown log level {level!r}")
    # The process's own stderr, as Celery uses: a stream swapped in later (a test's capture) may be closed.
    handler = logging.StreamHandler(sys.__stderr__ or sys.stderr)
    handler.setFormatter(formatter())
    handler.setLevel(level)
    handler._syndicate = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_syndicate", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Python warnings (Celery's SecurityWarning, deprecations) become records in the same format.
    logging.captureWarnings(True)
    for name, prefix in _DEMOTED.items():
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, _Demote)]:
            logger.removeFilter(old)
        logger.addFilter(_Demote(prefix))
    # uvicorn's loggers keep no handlers of their own (the API starts it with log_config=None),
    # so they reach the root handler above like everything else.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


class AccessLog:
    """ASGI middleware: one line per request with method, path, status and duration.

    The path is logged without its query string (a token may ride there) and no
    header is logged (Authorization carries the bearer token). Successful health,
    readiness and metrics probes log at DEBUG: a load balancer asks every few seconds.
    So do answered feed polls (200 or 304 under /feeds/): readers poll all day, a line
    each would cost more than the answer (half the API's 304 rate, measured by
    bench/feeds_serving.py), and the web server or CDN in front logs them anyway.
    """

    QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
    QUIET_PREFIX = "/feeds/"

    def __init__(self, app) -> None:
        self.app = app
        self.log = logging.getLogger("syndicate.access")

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees when the app raises before answering

        async def send_and_note(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self._note(scope, status, started)

    def _note(self, scope, status: int, started: float) -> None:
        path = scope["path"]
        quiet = (status < 400 and path in self.QUIET_PATHS) or (
            status in (200, 304) and path.startswith(self.QUIET_PREFIX))
        level = logging.DEBUG if quiet else logging.INFO
        if not self.log.isEnabledFor(level):
            return
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        fields = {"method": scope["method"], "path": path, "status": status, "duration_ms": duration_ms}
        # The router leaves the path's parameters in the scope: an id among them gets its own key.
        params = scope.get("path_params") or {}
        fields.update({name: params[name] for name in ID_FIELDS if isinstance(params.get(name), str)})
        self.log.log(level, "%s %s %d %.1f ms", scope["method"], path, status, duration_ms, extra=fields)
