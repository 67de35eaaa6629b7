"""Real HTTP partner sinks on loopback for the webhook tests and the bench.

A ``Sink`` is a ThreadingHTTPServer in a thread. It records every request
(exact body bytes, headers, arrival order) and answers what the test scripts:
a status with headers and body, a hang until released, or a redirect.
"""

from __future__ import annotations

import dataclasses
import http.server
import itertools
import threading
import time
import uuid
from typing import Any

import pytest

_order = itertools.count()


@dataclasses.dataclass
class Received:
    seq: int
    at: float
    path: str
    headers: dict[str, str]
    body: bytes


@dataclasses.dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    body: bytes = b"ok"
    hang: bool = False  # wait until the sink is released (or closed) before answering


class Sink:
    def __init__(self, default: Answer | None = None, port: int = 0, on_request: Any = None) -> None:
        self.default = default or Answer()
        self.on_request = on_request  # called with each Received before it is answered
        self.script: list[Answer] = []
        self.received: list[Received] = []
        self.inflight = 0
        self.max_inflight = 0
        self.lock = threading.Lock()
        self.released = threading.Event()
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            wbufsize = -1  # one write per answer: no Nagle/delayed-ACK stalls on loopback

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with sink.lock:
                    sink.received.append(Received(next(_order), time.monotonic(), self.path,
                                                  {k.lower(): v for k, v in self.headers.items()}, body))
                    if sink.on_request is not None:
                        sink.on_request(sink.received[-1])
                    answer = sink.script.pop(0) if sink.script else sink.default
                    sink.inflight += 1
                    sink.max_inflight = max(sink.max_inflight, sink.inflight)
                try:
                    if answer.hang:
                        sink.released.wait(60)
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                    self.wfile.flush()
                except OSError:
                    pass  # the client gave up (read timeout): nothing to answer
                finally:
                    with sink.lock:
                        sink.inflight -= 1

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook/{uuid.uuid4().hex[:6]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def answer(self, *answers: Answer) -> "Sink":
        with self.lock:
            self.script.extend(answers)
        return self

    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def requests(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


def verify(secret: str, request: Received) -> Any:
    """Verify exactly as a partner would, with the standardwebhooks package."""
    from standardwebhooks import Webhook

    return Webhook(secret).verify(request.body, request.headers)


@pytest.fixture()
def sinks():
    """A factory of sinks, all closed (and any hang released) when the test ends."""
    made: list[Sink] = []

    def make(default: Answer | None = None) -> Sink:
        made.append(Sink(default))
        return made[-1]

    yield make
    for sink in made:
        sink.close()


@pytest.fixture()
def partner(redis_client):
    """A factory of partners (name, secret), removed when the test ends: the run shares its
    partners, and one left behind would match every later event."""
    from syndicate.config import get_settings
    from syndicate.webhooks import registry
    from syndicate.webhooks.guard import Guard

    names: list[str] = []

    def make(url: str, **config):
        name = f"p-{uuid.uuid4().hex[:10]}"
        _record, secret = registry.add({"name": name, "url": url, **config}, Guard.from_settings(get_settings()))
        names.append(name)
        return name, secret

    yield make
    for name in names:
        registry.remove(name)



def serve(port: int, log_path: str, delay: float = 0.0) -> None:
    """A sink in a process of its own (the fault tests stop and restart it on the same port).

    Each request is appended to ``log_path`` as one JSON line (webhook-id, body
    digest, arrival time) and flushed before it is answered, so a request the
    sender saw answered is always in the log. ``delay`` slows each answer, so
    that a burst is still in flight when a test injects its fault.
    """
    import hashlib
    import json
    import signal
    import sys

    log = open(log_path, "a", encoding="utf-8")

    def record(request: Received) -> None:
        line = {"id": request.headers.get("webhook-id"), "sha": hashlib.sha256(request.body).hexdigest(),
                "at": time.time()}
        log.write(json.dumps(line) + "\n")
        log.flush()
        time.sleep(delay)  # under the sink's lock: requests are answered one at a time

    sink = Sink(port=port, on_request=record)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"listening on {sink.port}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    import sys

    serve(int(sys.argv[1]), sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 0.0)
