"""GET and 304 requests/s of a 50-item feed through the API vs nginx serving the same bytes.

nginx (Debian's package, one worker, sendfile) serves the file the worker wrote to
SYNDICATE_FEED_DIR; the API serves the stored document. wrk drives both with the
same connections in the same run. Targets: API GET >= 0.4x nginx, API 304 >= 0.15x.
Run:  .venv/bin/python bench/feeds_serving.py [--seconds 5] [--connections 16] [--api-processes 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request

import feeds_env  # noqa: F401  (sets the environment first)
from feeds_env import SEED, free_port, start_api, wait_port
from peers import Nginx, ensure, wrk
from results import record


def populate(count: int = 50) -> bytes:
    from syndicate import events
    from syndicate.config import get_settings
    from syndicate.feeds import service

    seed = json.loads(SEED.read_text())
    for n in range(count):
        article = {**seed, "id": f"bench-{n:03d}", "datePublished": f"2026-02-05T{n // 60:02d}:{n % 60:02d}:00Z",
                   "dateModified": f"2026-02-05T{n // 60:02d}:{n % 60:02d}:00Z"}
        events.ingest(article)
    service.rebuild(["all"])
    return (get_settings().feed_dir / "all.rss").read_bytes()


def fetch(url: str) -> tuple[bytes, dict[str, str]]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read(), dict(response.headers)


def checked(url: str, seconds: float, connections: int, expect: int, headers: dict | None = None) -> float:
    rate, statuses = wrk(url, seconds, connections, headers=headers)
    if set(statuses) != {expect}:
        raise SystemExit(f"{url}: expected only {expect} answers, got {statuses}")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--api-processes", type=int, default=None,
                        help="server processes for the API (default: syndicate api's own default)")
    args = parser.parse_args()
    ensure("nginx", "wrk")

    from syndicate.config import get_settings

    body = populate()
    port = free_port()
    nginx = Nginx(get_settings().feed_dir, port).start()
    try:
        wait_port(port)
        static_url = f"http://127.0.0.1:{port}/feeds/all.rss"
        extra = ["--workers", str(args.api_processes)] if args.api_processes else []
        api_url = start_api(*extra) + "/feeds/all.rss"
        api_body, api_headers = fetch(api_url)
        static_body, static_headers = fetch(static_url)
        assert api_body == static_body == body, "the API and nginx must serve the same bytes"
        print(f"feed: 50 items, {len(body):,} bytes; wrk, {args.connections} keep-alive connections, "
              f"{args.seconds:g} s per figure", flush=True)
        for url in (api_url, static_url):  # warm up
            checked(url, 1.0, args.connections, 200)
        api_get = checked(api_url, args.seconds, args.connections, 200)
        nginx_get = checked(static_url, args.seconds, args.connections, 200)
        api_304 = checked(api_url, args.seconds, args.connections, 304, {"If-None-Match": api_headers["etag"]})
        nginx_304 = checked(static_url, args.seconds, args.connections, 304,
                            {"If-None-Match": static_headers["ETag"]})
    finally:
        nginx.stop()
    record("feed GET through the API", api_get, "req/s", "nginx", nginx_get, ">= 0.4x", api_get / nginx_get >= 0.4)
    record("feed 304 through the API", api_304, "req/s", "nginx", nginx_304, ">= 0.15x", api_304 / nginx_304 >= 0.15)


if __name__ == "__main__":
    sys.exit(main())
