"""POST one signed body to a partner and report what happened; never raises on HTTP failure.

One ``requests.Session`` per worker process (and per guard), so connections to
a partner are kept alive across deliveries. Its adapter swaps urllib3's
connection classes for guarded ones: DNS is resolved by us, every resolved
address goes through ``Guard.check_address``, and the socket is opened to the
very address that passed, so DNS rebinding cannot slip past the check. Proxies
from the environment are ignored (``trust_env`` off) for the same reason.
Redirects are never followed: a 3xx is a failure like any non-2xx.

Each attempt builds its ``PreparedRequest`` itself and hands it to
``Session.send``: the same request, header for header, that ``Session.post``
would prepare (the session's default headers, then ours, each checked for
CR/LF by requests), without re-parsing the partner's URL on every attempt and
without the per-call cookie, netrc and proxy merging that this session never
uses (its cookie policy refuses every cookie, ``trust_env`` is off).
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import time
from http.cookiejar import DefaultCookiePolicy

import requests
from requests.adapters import HTTPAdapter
from requests.cookies import RequestsCookieJar
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NameResolutionError, NewConnectionError
from urllib3.util import connection as urllib3_connection

from .. import __version__
from .guard import BlockedDestination, Guard
from .outcome import RESPONSE_BODY_LIMIT, Outcome

USER_AGENT = f"syndicate-webhooks/{__version__}"
# Read at most this much of an answer; a bigger one costs its connection instead.
DRAIN_LIMIT = 256 * 1024
# Headers the partner's extra headers may not replace.
RESERVED_HEADERS = frozenset({
    "content-type", "content-length", "host", "user-agent", "transfer-encoding", "connection",
    "webhook-id", "webhook-timestamp", "webhook-signature",
})


class _GuardedConnectMixin:
    guard: Guard

    def _new_conn(self) -> socket.socket:  # urllib3 hook: called for every new connection
        host = self._dns_host  # type: ignore[attr-defined]
        try:
            infos = socket.getaddrinfo(host, self.port, type=socket.SOCK_STREAM)  # type: ignore[attr-defined]
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc  # type: ignore[attr-defined,arg-type]
        refused: list[BlockedDestination] = []
        last_error: OSError | None = None
        for _family, _type, _proto, _name, sockaddr in infos:
            try:
                address = self.guard.check_address(self.host, sockaddr[0])  # type: ignore[attr-defined]
            except BlockedDestination as exc:
                refused.append(exc)
                continue
            try:
                # Connect to the checked address itself, never re-resolve the name.
                return urllib3_connection.create_connection(
                    (str(address), self.port), self.timeout,  # type: ignore[attr-defined]
                    source_address=self.source_address, socket_options=self.socket_options,  # type: ignore[attr-defined]
                )
            except socket.timeout as exc:
                last_error = exc
            except OSError as exc:
                last_error = exc
        if refused and last_error is None:
            raise refused[0]
        if isinstance(last_error, socket.timeout):
            from urllib3.exceptions import ConnectTimeoutError

            raise ConnectTimeoutError(self, f"connect to {self.host} timed out")  # type: ignore[attr-defined]
        raise NewConnectionError(self, f"Failed to establish a new connection: {last_error}")  # type: ignore[arg-type]


class GuardedAdapter(HTTPAdapter):
    def __init__(self, guard: Guard, **kwargs: object) -> None:
        self.guard = guard
        super().__init__(**kwargs)  # type: ignore[arg-type]

    def init_poolmanager(self, *args: object, **kwargs: object) -> None:
        super().init_poolmanager(*args, **kwargs)  # type: ignore[arg-type]
        http_conn = type("GuardedHTTPConnection", (_GuardedConnectMixin, HTTPConnection), {"guard": self.guard})
        https_conn = type("GuardedHTTPSConnection", (_GuardedConnectMixin, HTTPSConnection), {"guard": self.guard})
        self.poolmanager.pool_classes_by_scheme = {
            "http": type("GuardedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn}),
            "https": type("GuardedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn}),
        }


_sessions: dict[tuple[int, Guard], requests.Session] = {}
_lock = threading.Lock()


def session_for(guard: Guard) -> requests.Session:
    """The process's keep-alive session for ``guard`` (a forked worker builds its own)."""
    slot = (os.getpid(), guard)
    session = _sessions.get(slot)
    if session is None:
        with _lock:
            session = _sessions.get(slot)
            if session is None:
                session = requests.Session()
                session.trust_env = False
                session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
                adapter = GuardedAdapter(guard, pool_connections=128, pool_maxsize=16, max_retries=0)
                session.mount("http://", adapter)
                session.mount("https://", adapter)
                _sessions[slot] = session
    return session


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


@functools.lru_cache(maxsize=4096)
def _prepared_url(url: str) -> str:
    """The URL as requests prepares it (IDNA host, quoting); a partner's URL is parsed once per process."""
    prepared = requests.PreparedRequest()
    prepared.prepare_url(url, None)
    return prepared.url  # type: ignore[return-value]


def _prepare(session: requests.Session, url: str, body: bytes, headers: dict[str, str]) -> requests.PreparedRequest:
    """What ``session.post(url, data=body, headers=headers)`` would send, prepared directly."""
    prepared = requests.PreparedRequest()
    prepared.method = "POST"
    prepared.url = _prepared_url(url)
    merged = CaseInsensitiveDict(session.headers)
    merged.update(headers)
    prepared.prepare_headers(merged)  # refuses a name or value with CR/LF, as session.post does
    prepared.prepare_cookies(RequestsCookieJar())  # the session's jar, always empty (see session_for)
    prepared.prepare_body(body, None)  # the exact bytes, and their Content-Length
    prepared.prepare_auth(None)  # credentials in the URL become Basic auth, as with session.post
    return prepared


def post(url: str, body: bytes, headers: dict[str, str], guard: Guard,
         connect_timeout: float, read_timeout: float) -> Outcome:
    """Send once. Every failure (guard, DNS, connect, timeout, non-2xx) comes back as an Outcome."""
    started = time.perf_counter()
    try:
        guard.check_url(url)
        session = session_for(guard)
        response = session.send(
            _prepare(session, url, body, headers), timeout=(connect_timeout, read_timeout),
            allow_redirects=False, stream=True, proxies={}, verify=True, cert=None,
        )
    except BlockedDestination as exc:
        return Outcome(None, _elapsed_ms(started), exc.message, blocked=True)
    except requests.exceptions.ConnectTimeout:
        return Outcome(None, _elapsed_ms(started), f"could not connect within {connect_timeout:g}s")
    except requests.exceptions.ReadTimeout:
        return Outcome(None, _elapsed_ms(started), f"no response within the read timeout of {read_timeout:g}s")
    except requests.exceptions.ConnectionError as exc:
        return Outcome(None, _elapsed_ms(started), f"connection failed: {_root_cause(exc)}")
    except requests.RequestException as exc:
        return Outcome(None, _elapsed_ms(started), f"request failed: {exc}")
    kept, error = _read_answer(response, read_timeout)
    return Outcome(
        response.status_code,
        _elapsed_ms(started),
        error or _status_error(response),
        kept.decode("utf-8", "replace"),
        response.headers.get("Retry-After"),
    )


def _status_error(response: requests.Response) -> str | None:
    if 200 <= response.status_code < 300:
        return None
    if 300 <= response.status_code < 400:
        where = response.headers.get("Location", "nowhere")
        return f"redirect to {where} not followed; register the final URL"
    return response.reason or None


def _read_answer(response: requests.Response, read_timeout: float) -> tuple[bytes, str | None]:
    """The first 4 KiB of the answer; the rest is drained (to keep the connection) up to a limit."""
    kept = bytearray()
    total = 0
    deadline = time.monotonic() + 2 * read_timeout  # a trickling answer must not hold us forever
    error = None
    try:
        for chunk in response.iter_content(16384):
            if len(kept) < RESPONSE_BODY_LIMIT:
                kept += chunk[: RESPONSE_BODY_LIMIT - len(kept)]
            total += len(chunk)
            if total > DRAIN_LIMIT or time.monotonic() > deadline:
                break
    except requests.RequestException as exc:
        error = f"answer cut short: {_root_cause(exc)}"
    finally:
        response.close()  # returns the connection to the pool when fully read, drops it otherwise
    return bytes(kept), error


def _root_cause(exc: BaseException) -> str:
    seen = exc
    while seen.__cause__ is not None or (seen.args and isinstance(seen.args[0], BaseException)):
        seen = seen.__cause__ or seen.args[0]
    text = str(seen)
    marker = "Failed to establish a new connection: "
    return text.split(marker, 1)[1] if marker in text else text


def is_reserved(header: str) -> bool:
    """Headers syndicate sets itself: the transport's, and every ``webhook-*`` (present or future) in any case."""
    lowered = header.strip().lower()
    return lowered in RESERVED_HEADERS or lowered.startswith("webhook-")


def request_headers(extra: dict[str, str], signed: dict[str, str]) -> dict[str, str]:
    """Partner's extra headers first, then ours, which always win."""
    # Values with CR/LF never get here (the schema refuses them, and requests refuses them again).
    out = {k: v for k, v in extra.items() if not is_reserved(k)}
    out.update({"Content-Type": "application/json", "User-Agent": USER_AGENT})
    out.update(signed)
    return out
