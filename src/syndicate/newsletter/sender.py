"""Sending an edition's copies: batches, one SMTP connection each, rate limit, retries.

The sender holds the edition's lease. Each pass claims recipients in batches
(Lua, lease-checked), sends every copy over the batch's one connection, and
records each outcome: sent, refused (5xx, recorded with the server's answer),
transient (4xx or a broken connection: retried on the next pass, after
``SYNDICATE_SMTP_RETRY_DELAYS``; failed for good after the last) or doubt (the
final dot went out, no answer came back: never sent again).

With ``SYNDICATE_SMTP_CONNECTIONS`` above 1 (the default is 1), that many
batches are in flight at once, each on a thread with its own SMTP connection
and its own ``Committer`` (Redis connection): an SMTP exchange is mostly
waiting for the server, so while one connection waits another sends. Claims
stay in one thread, in order, at most that many batches ahead of the sends.
The price: each connection has its own recipient between "committing" and the
server's answer, so a crash can leave up to that many recipients in doubt
(never sent twice) instead of at most one.
"""

from __future__ import annotations

import logging
import smtplib
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any

import redis

from .. import metrics
from ..config import get_settings
from ..errors import DeliveryError
from . import editions, tokens
from .message import Copy, EditionMessage
from .smtpurl import parse_smtp_url
from .transport import CommitAborted, Outcome, SmtpConnection

log = logging.getLogger("syndicate.newsletter")


class LeaseLost(DeliveryError):
    """Another sender took over this edition (ours stalled past the lease); stop without sending more."""


class RateLimiter:
    """At most ``rate`` messages per second (0: unlimited), as evenly spaced slots (pure but for its clock).

    ``clock`` and ``sleep`` are injected: the sender passes a sleep that keeps the
    edition's lease alive (a slow rate can wait longer than the lease), tests a
    clock of their own.
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.clock, self.sleep = clock, sleep
        self.next: float | None = None  # the earliest time the next message may go
        self.lock = threading.Lock()  # the connections share one pace

    def delay(self, now: float) -> float:
        """How long to wait at ``now`` before the next message, and book its slot."""
        if not self.interval:
            return 0.0
        start = now if self.next is None else max(self.next, now)
        self.next = start + self.interval
        return start - now

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            seconds = self.delay(self.clock())
        if seconds > 0:
            self.sleep(seconds)


class AuthenticationFailed(DeliveryError):
    """The SMTP server refused our credentials: no recipient can be sent until the operator fixes them."""


class SmtpUnavailable(DeliveryError):
    """The SMTP server cannot be reached: the edition pauses, its recipients keep their attempts."""


class Sender:
    def __init__(self, eid: str, list_id: str, content: dict[str, Any], owner: str,
                 progress: Callable[[int], None] | None, r: redis.Redis,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] | None = None) -> None:
        settings = get_settings()
        self.settings, self.eid, self.list_id, self.owner, self.r = settings, eid, list_id, owner, r
        self._progress = progress or (lambda n: None)
        self._progress_lock = threading.Lock()  # a CLI progress bar is not thread-safe
        self.message = EditionMessage(content["list"], eid, content["subject"], content["html"], content["text"],
                                      settings.newsletter_from, date=content.get("issued_at"))
        self.smtp = parse_smtp_url(settings.smtp_url)
        self.ttl = settings.newsletter_lease_seconds
        self.max_attempts = len(settings.smtp_retry_delays) + 1
        self.pacer = RateLimiter(settings.smtp_rate_per_second, clock, sleep or self._sleep)
        self.connections = settings.smtp_connections
        self.stopping = threading.Event()

    def progress(self, n: int) -> None:
        with self._progress_lock:
            self._progress(n)

    def run(self) -> None:
        delays = list(self.settings.smtp_retry_delays)
        while self._pass() and delays:
            self._sleep(delays.pop(0))

    def _sleep(self, seconds: float) -> None:
        # Keep the lease alive while waiting to retry.
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.r.eval("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0",
                           1, editions.ed_key(self.eid, "lease"), self.owner, int(self.ttl * 1000)) != 1:
                raise LeaseLost(f"lost the lease of edition {self.eid} while waiting to retry")
            time.sleep(min(max(deadline - time.monotonic(), 0), self.ttl / 3))

    def _claim(self, offset: int) -> tuple[int, list]:
        """The next batch of recipients from ``offset``: (next offset, batch); LeaseLost if ours is gone."""
        got = editions.claim(self.eid, self.list_id, self.owner, self.ttl, offset, self.settings.smtp_batch_size,
                             self.r)
        if got is None:
            raise LeaseLost(f"lost the lease of edition {self.eid}")
        return got

    def _pass(self) -> bool:
        """One pass over every claimable recipient; True if some should be retried.

        The first error of any batch (lease lost, server unreachable, credentials
        refused) stops the claims; the batches already in flight finish their
        current message and record it, then the error is raised.
        """
        offset, retry = 0, False
        if self.connections == 1:
            while True:
                next_offset, batch = self._claim(offset)
                if batch:
                    retry |= self._batch(batch)
                if next_offset == offset:
                    return retry
                offset = next_offset
        running: set[Future[bool]] = set()
        with ThreadPoolExecutor(max_workers=self.connections, thread_name_prefix="smtp") as pool:
            try:
                while True:
                    if len(running) >= self.connections:
                        done, running = wait(running, return_when=FIRST_COMPLETED)
                        retry |= self._results(done)
                    next_offset, batch = self._claim(offset)
                    if batch:
                        running.add(pool.submit(self._batch, batch))
                    if next_offset == offset:
                        break
                    offset = next_offset
                done, running = wait(running, return_when=FIRST_EXCEPTION)
                retry |= self._results(done)
            except BaseException:
                self.stopping.set()
                raise
            finally:
                if running:
                    self.stopping.set()
                    wait(running)
        return retry

    @staticmethod
    def _results(done: set[Future[bool]]) -> bool:
        retry = False
        for future in done:
            retry |= future.result()  # re-raises the batch's error here, in the caller's thread
        return retry

    def _open(self) -> tuple[SmtpConnection | None, str]:
        conn = SmtpConnection(self.smtp)
        try:
            conn.open()
        except smtplib.SMTPAuthenticationError as exc:
            # Retrying cannot help (and hammering a server with bad credentials gets the sender
            # blocked): stop the edition, its claimed recipients stay claimable for a resume.
            reply = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
            raise AuthenticationFailed(
                f"the SMTP server {self.smtp.redacted()} refused the credentials ({exc.smtp_code} {reply}): "
                "fix the user and password in SYNDICATE_SMTP_URL (percent-encode special characters), "
                f"restart the workers, then run `syndicate digest resume {self.eid}`") from None
        except smtplib.SMTPNotSupportedError as exc:
            raise AuthenticationFailed(
                f"the SMTP server {self.smtp.redacted()} does not offer AUTH on this connection ({exc}): "
                "use smtp+starttls:// or smtps:// in SYNDICATE_SMTP_URL (most servers only offer AUTH over TLS), "
                f"restart the workers, then run `syndicate digest resume {self.eid}`") from None
        except Exception as exc:  # connect/TLS/auth failures are transient for every recipient in the batch
            log.warning("edition %s: cannot connect to %s: %s", self.eid, self.smtp.redacted(), exc)
            return None, f"connect: {type(exc).__name__}: {exc}"
        return conn, ""

    def _batch(self, batch: list[tuple[str, str]]) -> bool:
        """Send one claimed batch over one connection (runs on a pool thread)."""
        retry = False
        conn, connect_error = self._open()  # one connection for the whole batch
        committer = editions.Committer(self.eid, self.owner, self.ttl, self.r)  # and one Redis connection
        prepared: dict[int, Copy] = {}
        try:
            for i, (address, sid) in enumerate(batch):
                if self.stopping.is_set():
                    # Another batch hit an error that ends this run: the rest stay claimable.
                    break
                if conn is None:
                    # The server is down, not these recipients' mailboxes: they stay claimable
                    # (never "committing") and the next run sends them, however long the outage.
                    raise SmtpUnavailable(f"cannot reach the SMTP server {self.smtp.redacted()} ({connect_error})")
                copy = prepared.pop(i, None) or self._copy(address, sid)

                def prepare_next(j: int = i + 1) -> None:
                    # Runs while the server digests message i: the next copy costs no wall time.
                    if j < len(batch):
                        prepared[j] = self._copy(*batch[j])

                outcome = self._send_one(conn, committer, copy, prepare_next)
                retry |= self._record(committer, address, outcome)
                self.progress(1)
                if outcome.broken:
                    conn.abort()
                    conn, connect_error = self._open()
        finally:
            committer.close()
            if conn is not None:
                conn.close()
        return retry

    def _copy(self, address: str, sid: str) -> Copy:
        token = tokens.sign(self.settings.secret_key, tokens.UNSUBSCRIBE, self.list_id, sid)
        return self.message.copy_for(address, sid, f"{self.settings.public_url}/unsubscribe/{token}", token)

    def _send_one(self, conn: SmtpConnection, committer: editions.Committer, copy: Copy,
                  prepare_next: Callable[[], None]) -> Outcome:
        self.pacer.wait()
        try:
            return conn.send(copy.sender, copy.recipient, copy.data,
                             commit=committer.for_recipient(copy.recipient), while_waiting=prepare_next)
        except CommitAborted as exc:
            raise LeaseLost(str(exc)) from None

    def _record(self, committer: editions.Committer, address: str, outcome: Outcome) -> bool:
        metrics.email(outcome.status)
        if outcome.status == "sent":
            committer.record_sent(address, outcome.detail[:100])
            return False
        if outcome.status == "transient":
            return editions.record_transient(self.eid, address, outcome.detail, self.max_attempts, self.r)
        editions.record(self.eid, address, outcome.status, outcome.detail[:300], self.r)
        return False
