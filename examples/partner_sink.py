"""A partner's webhook endpoint, for trying syndicate's webhooks on one machine.

    python examples/partner_sink.py PORT SECRET

It listens on 127.0.0.1:PORT, checks each POST's Standard Webhooks signature with the
partner's SECRET (the ``whsec_…`` value ``syndicate partners add`` printed) using the
``standardwebhooks`` package, as a partner would, and answers 204 for a valid one, 401
otherwise. It prints one line per request: ``verified WEBHOOK-ID TYPE ARTICLE-ID`` or
``REJECTED WEBHOOK-ID: why``.

``GET /`` lists the events verified so far, one per line; ``GET /?wait=N`` first waits
(up to 60 s) until N have arrived, so a script can wait for a delivery without polling.

syndicate refuses loopback targets unless ``SYNDICATE_WEBHOOK_ALLOW_NETWORKS`` lets them
through (``127.0.0.1/32``), for ``syndicate run`` and for the command that pings.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

WAIT_SECONDS = 60.0


class Sink:
    """What the endpoint verified, shared by the request threads."""

    def __init__(self, secret: str) -> None:
        self.webhook = Webhook(secret)
        self.verified: list[str] = []
        self.changed = threading.Condition()

    def receive(self, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        webhook_id = headers.get("webhook-id", "?")
        try:
            event = self.webhook.verify(body, headers)
        except WebhookVerificationError as error:
            return 401, f"REJECTED {webhook_id}: {error}"
        data = event.get("data") or {}
        line = f"verified {webhook_id} {event.get('type')} {data.get('id') or data.get('article_id') or '-'}"
        with self.changed:
            self.verified.append(line)
            self.changed.notify_all()
        return 204, line

    def wait_for(self, count: int) -> list[str]:
        with self.changed:
            self.changed.wait_for(lambda: len(self.verified) >= count, timeout=WAIT_SECONDS)
            return list(self.verified)


def handler_for(sink: Sink) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, line = sink.receive(body, {k.lower(): v for k, v in self.headers.items()})
            print(line, flush=True)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:  # noqa: N802
            wanted = parse_qs(urlsplit(self.path).query).get("wait", ["0"])[0]
            lines = sink.wait_for(int(wanted)) if wanted.isdigit() else list(sink.verified)
            text = "".join(f"{line}\n" for line in lines) or "no webhook received yet\n"
            payload = text.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # one line per webhook (above) is all this prints

    return Handler


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[0].isdigit() or not argv[1].startswith("whsec_"):
        print("usage: python examples/partner_sink.py PORT SECRET  (SECRET: the whsec_… value "
              "`syndicate partners add` printed)", file=sys.stderr)
        return 2
    server = ThreadingHTTPServer(("127.0.0.1", int(argv[0])), handler_for(Sink(argv[1])))
    print(f"partner sink listening on http://127.0.0.1:{server.server_address[1]}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
