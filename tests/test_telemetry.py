"""OpenTelemetry (the ``otel`` extra): one trace from the POST to the partner's delivery.

The API and a worker run as real processes of a deployment of their own, with
``SYNDICATE_OTEL=1``, exporting OTLP/HTTP to a collector this test runs on loopback
(it decodes the protobuf requests with the proto package the exporter brings).
"""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import uuid

import pytest
import requests

from conftest import ADMIN_AUTH, INGEST_AUTH, ROOT, free_port, unique_article, wait_for
from webhooks_fixtures import sinks  # noqa: F401 - fixture

pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed: pip install -e '.[otel]'")
trace_service = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2",
                                    reason="the otel extra is not installed: pip install -e '.[otel]'")


class Collector:
    """An OTLP/HTTP trace receiver: ``spans`` holds (service, trace id, span id, parent id, name, kind)."""

    def __init__(self) -> None:
        self.spans: list[dict] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = trace_service.ExportTraceServiceRequest()
                request.ParseFromString(body)
                with collector.lock:
                    for resource_spans in request.resource_spans:
                        attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                        for scope in resource_spans.scope_spans:
                            for span in scope.spans:
                                collector.spans.append({
                                    "service": attrs.get("service.name"), "trace": span.trace_id.hex(),
                                    "id": span.span_id.hex(), "parent": span.parent_span_id.hex(),
                                    "name": span.name, "kind": span.kind})
                answer = trace_service.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def trace(self, trace_id: str) -> list[dict]:
        with self.lock:
            return [s for s in self.spans if s["trace"] == trace_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_one_trace_runs_from_the_post_to_each_partner_delivery(deployment, sinks, pool):  # noqa: F811
    collector = Collector()
    partner_sink = sinks()
    deployment.env.update(SYNDICATE_OTEL="1", OTEL_EXPORTER_OTLP_ENDPOINT=collector.url, OTEL_BSP_SCHEDULE_DELAY="100")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    api = subprocess.Popen([sys.executable, "-m", "syndicate.cli.main", "api", "--port", str(port)],
                           env=deployment.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deployment.start_worker("all", "ingest,feeds,webhooks,newsletter", concurrency=1, pool=pool)

        def up() -> bool:
            try:
                return requests.get(f"{url}/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                return api.poll() is not None

        wait_for(up, timeout=60, message="the API")
        assert api.poll() is None
        names = [f"t{i}-{uuid.uuid4().hex[:6]}" for i in range(2)]
        for name in names:
            r = requests.post(f"{url}/v1/partners", json={"name": name, "url": partner_sink.url}, headers=ADMIN_AUTH)
            assert r.status_code == 201, r.text

        r = requests.post(f"{url}/v1/articles", json=unique_article(), headers=INGEST_AUTH, timeout=10)
        assert r.status_code == 202, r.text
        wait_for(lambda: partner_sink.count() == len(names), timeout=60, message="both deliveries")

        # Each partner got the trace's context, and it is the POST's trace.
        parents = {request.headers.get("traceparent", "") for request in partner_sink.requests()}
        trace_ids = {value.split("-")[1] for value in parents if value.count("-") == 3}
        assert len(trace_ids) == 1, parents
        trace_id = trace_ids.pop()

        def whole() -> list[dict] | None:
            spans = collector.trace(trace_id)
            delivered = [s for s in spans if s["service"] == "syndicate-worker" and s["name"] == "POST"]
            # Each process exports its spans in its own batches: the API's server span (no parent) when
            # its request ends, the fan-out worker's maybe after the webhooks worker's. Wait for the root
            # itself and for every span's parent, not for any span named after the route.
            ids = {s["id"] for s in spans}
            return spans if len(delivered) == len(names) and any(
                s["service"] == "syndicate-api" and not s["parent"] for s in spans) and all(
                not s["parent"] or s["parent"] in ids for s in spans) else None

        spans = wait_for(whole, timeout=30, message="the spans of the trace")
        by_id = {s["id"]: s for s in spans}
        root = [s for s in spans if not s["parent"]]
        assert len(root) == 1 and root[0]["service"] == "syndicate-api", root
        names_seen = {s["name"] for s in spans}
        assert any("syndicate.ingest.fanout" in n for n in names_seen), names_seen
        assert any("syndicate.webhooks.dispatch_event" in n for n in names_seen), names_seen
        # Every delivery's span hangs, link by link, from the POST's server span.
        for delivery in (s for s in spans if s["name"] == "POST" and s["service"] == "syndicate-worker"):
            chain, span = [], delivery
            while span["parent"]:
                span = by_id[span["parent"]]
                chain.append(span["name"])
            assert span is root[0], chain
            assert any("syndicate.webhooks.dispatch_event" in n for n in chain), chain
    finally:
        api.terminate()
        api.wait(15)
        collector.close()
