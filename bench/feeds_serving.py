"""GET and 304 requests/s of a 50-item feed through the API vs Python's static file server.

Both serve the same bytes (the file the worker wrote to SYNDICATE_FEED_DIR is
what the API serves from Redis), in the same run, to the same keep-alive client
(several processes, one connection each). Targets: API GET >= 0.3x and API 304
>= 0.5x the static server. Run:  .venv/bin/python bench/feeds_serving.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import sys
import time
import urllib.parse

import feeds_env  # noqa: F401  (sets the environment first)
from feeds_env import SEED, start, start_api, wait_port, free_port


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


def _client(url: str, headers: dict, seconds: float, expect: int, out) -> None:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    done, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        conn.request("GET", parts.path, headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status != expect:
            raise SystemExit(f"{url}: expected {expect}, got {response.status}")
        done += 1
    out.put(done)


def rate(url: str, headers: dict, seconds: float, expect: int, clients: int) -> float:
    out: mp.Queue = mp.Queue()
    procs = [mp.Process(target=_client, args=(url, headers, seconds, expect, out)) for _ in range(clients)]
    for p in procs:
        p.start()
    total = sum(out.get() for _ in procs)
    for p in procs:
        p.join()
    return total / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()

    from syndicate.config import get_settings

    body = populate()
    port = free_port()
    start(sys.executable, "-m", "http.server", "-p", "HTTP/1.1", "-b", "127.0.0.1", "-d",
          str(get_settings().feed_dir), str(port))
    wait_port(port)
    static_url = f"http://127.0.0.1:{port}/all.rss"
    api_url = start_api() + "/feeds/all.rss"

    def first(url: str) -> http.client.HTTPResponse:
        parts = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port)
        conn.request("GET", parts.path)
        response = conn.getresponse()
        response.body = response.read()
        return response

    api_first, static_first = first(api_url), first(static_url)
    assert api_first.body == static_first.body == body, "the two servers must serve the same bytes"
    print(f"feed: 50 items, {len(body):,} bytes; {args.clients} keep-alive clients, {args.seconds:.0f}s each")

    for url in (api_url, static_url):  # warm up
        rate(url, {}, 1.0, 200, args.clients)
    api_get = rate(api_url, {}, args.seconds, 200, args.clients)
    static_get = rate(static_url, {}, args.seconds, 200, args.clients)
    api_304 = rate(api_url, {"If-None-Match": api_first.getheader("ETag")}, args.seconds, 304, args.clients)
    static_304 = rate(static_url, {"If-Modified-Since": static_first.getheader("Last-Modified")},
                      args.seconds, 304, args.clients)

    print(f"{'':<8}{'API req/s':>12}{'static req/s':>15}{'ratio':>8}{'target':>9}")
    for label, api, static, target in (("GET", api_get, static_get, 0.3), ("304", api_304, static_304, 0.5)):
        ratio = api / static
        print(f"{label:<8}{api:>12,.0f}{static:>15,.0f}{ratio:>8.2f}{'>= ' + str(target):>9}  "
              f"{'ok' if ratio >= target else 'BELOW TARGET'}")


if __name__ == "__main__":
    main()
