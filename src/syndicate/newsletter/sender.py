"""Sending an edition's copies: batches, one SMTP connection each, rate limit, retries.

The sender holds the edition's lease. Each pass claims recipients in batches
(Lua, lease-checked), sends every copy over the batch's one connection, and
records each outcome: sent, refused (5xx, recorded with the server's answer),
transient (4xx or a broken connection: retried on the next pass, after
``SYNDICATE_SMTP_RETRY_DELAYS``; failed for good after the last) or doubt (the
final dot went out, no answer came back: never sent again).
"""

from __future__ import annotations

import logging
import smtplib
import time
from collections.abc import Callable
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
        self.progress = progress or (lambda n: None)
        self.message = EditionMessage(content["list"], eid, content["subject"], content["html"], content["text"],
                                      settings.newsletter_from, date=content.get("issued_at"))
        self.smtp = parse_smtp_url(settings.smtp_url)
        self.ttl = settings.newsletter_lease_seconds
        self.max_attempts = len(settings.smtp_retry_delays) + 1
        self.pacer = RateLimiter(settings.smtp_rate_per_second, clock, sleep or self._sleep)
        self.committer = editions.Committer(eid, owner, self.ttl, r)

    def run(self) -> None:
        delays = list(self.settings.smtp_retry_delays)
        try:
            while self._pass() and delays:
                self._sleep(delays.pop(0))
        finally:
            self.committer.close()

    def _sleep(self, seconds: float) -> None:
        # Keep the lease alive while waiting to retry.
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.r.eval("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0",
                           1, editions.ed_key(self.eid, "lease"), self.owner, int(self.ttl * 1000)) != 1:
                raise LeaseLost(f"lost the lease of edition {self.eid} while waiting to retry")
            time.sleep(min(max(deadline - time.monotonic(), 0), self.ttl / 3))

    def _pass(self) -> bool:
        """One pass over every claimable recipient; True if some should be retried."""
        offset, retry = 0, False
        while True:
            got = editions.claim(self.eid, self.list_id, self.owner, self.ttl, offset,
                                 self.settings.smtp_batch_size, self.r)
            if got is None:
                raise LeaseLost(f"lost the lease of edition {self.eid}")
            next_offset, batch = got
            if batch:
                retry |= self._batch(batch)
            if next_offset == offset:
                return retry
            offset = next_offset

    def _open(self) -> SmtpConnection | None:
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
            self.connect_error = f"connect: {type(exc).__name__}: {exc}"
            return None
        return conn

    def _batch(self, batch: list[tuple[str, str]]) -> bool:
        retry = False
        conn = self._open()  # one connection for the whole batch
        prepared: dict[int, Copy] = {}
        try:
            for i, (address, sid) in enumerate(batch):
                if conn is None:
                    # The server is down, not these recipients' mailboxes: they stay claimable
                    # (never "committing") and the next run sends them, however long the outage.
                    raise SmtpUnavailable(f"cannot reach the SMTP server {self.smtp.redacted()} ({self.connect_error})")
                copy = prepared.pop(i, None) or self._copy(address, sid)

                def prepare_next(j: int = i + 1) -> None:
                    # Runs while the server digests message i: the next copy costs no wall time.
                    if j < len(batch):
                        prepared[j] = self._copy(*batch[j])

                outcome = self._send_one(conn, copy, prepare_next)
                retry |= self._record(address, outcome)
                self.progress(1)
                if outcome.broken:
                    conn.abort()
                    conn = self._open()
        finally:
            self.committer.flush()
            if conn is not None:
                conn.close()
        return retry

    def _copy(self, address: str, sid: str) -> Copy:
        token = tokens.sign(self.settings.secret_key, tokens.UNSUBSCRIBE, self.list_id, sid)
        return self.message.copy_for(address, sid, f"{self.settings.public_url}/unsubscribe/{token}", token)

    def _send_one(self, conn: SmtpConnection, copy: Copy, prepare_next: Callable[[], None]) -> Outcome:
        self.pacer.wait()
        try:
            return conn.send(copy.sender, copy.recipient, copy.data,
                             commit=self.committer.for_recipient(copy.recipient), while_waiting=prepare_next)
        except CommitAborted as exc:
            raise LeaseLost(str(exc)) from None

    def _record(self, address: str, outcome: Outcome) -> bool:
        metrics.email(outcome.status)
        if outcome.status == "sent":
            self.committer.record_sent(address, outcome.detail[:100])
            return False
        if outcome.status == "transient":
            return editions.record_transient(self.eid, address, outcome.detail, self.max_attempts, self.r)
        editions.record(self.eid, address, outcome.status, outcome.detail[:300], self.r)
        return False
