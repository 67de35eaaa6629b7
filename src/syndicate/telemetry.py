"""OpenTelemetry tracing, optional: one trace from ``POST /v1/articles`` to each partner delivery.

Off unless ``SYNDICATE_OTEL=1`` and the ``otel`` extra is installed
(``pip install 'syndicate[otel]'``). Everything else is OpenTelemetry's own
configuration: ``OTEL_SERVICE_NAME`` (default ``syndicate-api`` /
``syndicate-worker``), ``OTEL_TRACES_EXPORTER`` (``otlp``, the default, over
HTTP/protobuf to ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``; ``console`` to write spans to stderr;
``none``), ``OTEL_BSP_*`` for batching.

What is instrumented: the API (FastAPI server spans), Celery on both sides (a
publish puts the trace context into the message headers, the worker continues
it), ``requests`` (webhook attempts and WebSub pings as client spans, with
``traceparent`` sent along) and threads (a webhook attempt runs on the
worker's attempt pool, so its span joins the task that started it). Celery's
prefork children each set up their own exporter after the fork (its thread
does not survive one) and flush it when they exit.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("syndicate.telemetry")

_provider = None


def enabled() -> bool:
    return os.environ.get("SYNDICATE_OTEL", "").lower() in ("1", "true", "yes", "on")


def setup(service: str) -> bool:
    """Install the tracer provider and the instrumentations in this process; True when tracing is on."""
    global _provider
    if _provider is not None:
        return True
    if not enabled():
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.instrumentation.celery import CeleryInstrumentor
        from opentelemetry.instrumentation.requests import RequestsInstrumentor
        from opentelemetry.instrumentation.threading import ThreadingInstrumentor
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        log.warning("SYNDICATE_OTEL is on but OpenTelemetry is missing (%s): pip install 'syndicate[otel]'", exc)
        return False
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or service}))
    exporter = _exporter()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    CeleryInstrumentor().instrument(tracer_provider=provider)
    RequestsInstrumentor().instrument(tracer_provider=provider)
    ThreadingInstrumentor().instrument()
    _provider = provider
    log.info("OpenTelemetry tracing on (service %s)", os.environ.get("OTEL_SERVICE_NAME") or service)
    return True


def _exporter():
    kind = (os.environ.get("OTEL_TRACES_EXPORTER") or "otlp").split(",")[0].strip().lower()
    if kind == "none":
        return None
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def instrument_api(app) -> None:
    """Server spans for every request of the FastAPI ``app`` (and its Celery publishes join them)."""
    if setup("syndicate-api"):
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz,metrics")


def traced_api():
    """``syndicate api``'s application factory when tracing is on."""
    from .api import create_app

    app = create_app()
    instrument_api(app)
    return app


def shutdown() -> None:
    """Flush the spans this process still holds (a prefork child leaves through os._exit)."""
    if _provider is not None:
        _provider.shutdown()
