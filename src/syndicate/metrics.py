"""Prometheus metrics of the work itself: tasks, deliveries, emails, feed renders, WebSub pings.

The channel code calls the one-line recorders below (``task_finished``,
``webhook_attempt``, ``email``, ``feed_render``, ``websub_ping``,
``reconciler_reenqueued``); this module alone knows Prometheus.

Where the figures live. Celery's prefork pool runs tasks in child processes, so
each worker *host* aggregates its children with prometheus-client's multiprocess
mode: ``syndicate worker`` (given ``SYNDICATE_WORKER_METRICS_PORT``) gives its
children a fresh ``PROMETHEUS_MULTIPROC_DIR``, and its parent process serves
``/metrics`` on that port, summing every child's files. ``syndicate run`` gives
the API and all its workers one shared directory instead, so the API's own
``/metrics`` carries the workers' series too. Without either, the figures stay in
the process (the test suite's in-process worker threads), in ``REGISTRY``.
Deployment-wide state (queue depths, receipts owed, dead letters, reconciler
re-dispatches) is read from Redis by the API at scrape time
(``syndicate.api.metrics``); what is here is per host and summed by Prometheus.

Cardinality is bounded by construction: queues, tasks and outcomes are fixed
sets; feeds are labelled ``all`` or ``section``; partners are labelled by name
only for the ``SYNDICATE_METRICS_PARTNER_LABELS`` (default 20) oldest partners
of the registry, every other partner counts as ``other``.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess

log = logging.getLogger("syndicate.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
OTHER_PARTNERS = "other"
PARTNER_REFRESH_SECONDS = 60.0

# Task runs go from a few milliseconds (a fan-out) to minutes (an edition to a large list).
TASK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
RENDER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# The in-process registry (no multiprocess directory): the API's /metrics includes it.
REGISTRY = CollectorRegistry(auto_describe=True)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


class _Metrics:
    def __init__(self) -> None:
        from prometheus_client import values

        if multiprocess_dir() and values.ValueClass is values.MutexValue:
            # prometheus-client picks its value store when first imported; a process that
            # imported it before the directory was set still writes the shared files.
            values.ValueClass = values.get_value_class()
        registry = None if multiprocess_dir() else REGISTRY
        self.task_seconds = Histogram(
            "syndicate_task_duration_seconds", "Task run time by queue (every run: success, retry or failure)",
            ["queue"], buckets=TASK_BUCKETS, registry=registry)
        self.tasks = Counter("syndicate_tasks", "Task runs by queue, task and outcome (success, retry, failure)",
                             ["queue", "task", "outcome"], registry=registry)
        self.attempts = Counter(
            "syndicate_webhook_attempts",
            "Webhook delivery attempts by partner and result (succeeded, retry, failed, disable)",
            ["partner", "result"], registry=registry)
        self.deliveries = Counter(
            "syndicate_webhook_deliveries",
            "Webhook deliveries ended, by partner and outcome (delivered, failed)",
            ["partner", "outcome"], registry=registry)
        self.emails = Counter("syndicate_emails",
                              "Newsletter copies by SMTP outcome (sent, refused, transient, doubt)",
                              ["outcome"], registry=registry)
        self.renders = Counter("syndicate_feed_renders", "Feed renders (all formats of one feed), by feed kind",
                               ["feed"], registry=registry)
        self.render_seconds = Histogram("syndicate_feed_render_duration_seconds", "Feed render time by feed kind",
                                        ["feed"], buckets=RENDER_BUCKETS, registry=registry)
        self.websub = Counter("syndicate_websub_pings", "WebSub publish pings by outcome (ok, failed)",
                              ["outcome"], registry=registry)
        self.reenqueued = Counter("syndicate_reconciler_reenqueued",
                                  "Logged events the reconciler enqueued again for fan-out", registry=registry)


_lock = threading.Lock()
_built: _Metrics | None = None


def _metrics() -> _Metrics:
    # Built on first use, in the process that records: by then the CLI has set the directory.
    global _built
    if _built is None:
        with _lock:
            if _built is None:
                _built = _Metrics()
    return _built


# --- recorders (one-line hooks in the channel code) -------------------------

def task_finished(queue: str, task: str, outcome: str, duration_ms: float | None) -> None:
    m = _metrics()
    m.tasks.labels(queue, task, outcome).inc()
    if duration_ms is not None:
        m.task_seconds.labels(queue).observe(duration_ms / 1000)


def webhook_attempt(partner: str, result: str, status: str) -> None:
    """One attempt ended with ``result``; ``status`` is the delivery's state after it."""
    m = _metrics()
    label = partner_label(partner)
    m.attempts.labels(label, result).inc()
    if status in ("succeeded", "failed"):
        m.deliveries.labels(label, "delivered" if status == "succeeded" else "failed").inc()


def email(outcome: str) -> None:
    _metrics().emails.labels(outcome).inc()


@contextlib.contextmanager
def feed_render(feed_id: str) -> Iterator[None]:
    kind = "all" if feed_id == "all" else "section"
    started = time.perf_counter()
    yield
    m = _metrics()
    m.render_seconds.labels(kind).observe(time.perf_counter() - started)
    m.renders.labels(kind).inc()


def websub_ping(ok: bool) -> None:
    _metrics().websub.labels("ok" if ok else "failed").inc()


def reconciler_reenqueued(count: int) -> None:
    if count:
        _metrics().reenqueued.inc(count)


# --- bounded partner labels -------------------------------------------------

_partners: tuple[float, frozenset[str]] = (0.0, frozenset())


def partner_label(name: str) -> str:
    """``name`` when it is among the oldest partners (the label budget), else ``other``."""
    global _partners
    read_at, labelled = _partners
    if time.monotonic() - read_at > PARTNER_REFRESH_SECONDS:
        from .config import get_settings
        from .store import get_redis, key

        try:
            budget = get_settings().metrics_partner_labels
            names = get_redis().zrange(key("webhooks", "partners"), 0, budget - 1) if budget > 0 else []
            labelled = frozenset(names)
        except Exception:  # noqa: BLE001 - a metric must never fail a delivery; keep the last list
            log.debug("could not read the partner list for metric labels", exc_info=True)
        _partners = (time.monotonic(), labelled)
    return name if name in labelled else OTHER_PARTNERS


# --- worker processes -------------------------------------------------------

def prepare_worker(port: int | None) -> str | None:
    """Before a worker starts: make sure its children write to a multiprocess directory.

    A directory given in ``PROMETHEUS_MULTIPROC_DIR`` belongs to whoever set it
    (``syndicate run`` empties it at its start). With a metrics port and no
    directory, the worker makes a fresh one of its own and removes it at exit.
    """
    if multiprocess_dir():
        Path(multiprocess_dir()).mkdir(parents=True, exist_ok=True)
        return multiprocess_dir()
    if not port:
        return None
    path = tempfile.mkdtemp(prefix="syndicate-metrics-")
    os.environ[MULTIPROC_ENV] = path
    owner = os.getpid()
    # Pool children leave through os._exit, but guard anyway: only the parent removes it.
    atexit.register(lambda: os.getpid() == owner and shutil.rmtree(path, ignore_errors=True))
    return path


def reset_dir(path: Path) -> None:
    """Empty a multiprocess directory before any process of a new run writes to it."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)


def multiprocess_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=multiprocess_dir())
    return registry


def serve_worker_metrics() -> None:
    """In the worker's parent process, once the pool runs: serve the host's /metrics if asked to."""
    from prometheus_client import start_http_server

    from .config import get_settings

    settings = get_settings()
    if not settings.worker_metrics_port or not multiprocess_dir():
        return
    try:
        start_http_server(settings.worker_metrics_port, settings.worker_metrics_host, registry=multiprocess_registry())
    except OSError as exc:
        log.error("cannot serve worker metrics on %s:%s: %s (is the port taken? set SYNDICATE_WORKER_METRICS_PORT)",
                  settings.worker_metrics_host, settings.worker_metrics_port, exc)
        return
    log.info("worker metrics at http://%s:%s/metrics", settings.worker_metrics_host, settings.worker_metrics_port)


def process_exited(pid: int | None = None) -> None:
    """A pool child is going away: drop its live-gauge files (counters and histograms stay summed)."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid or os.getpid(), multiprocess_dir())
