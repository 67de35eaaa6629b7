"""The SMTP transport: one connection, many messages, an outcome per message.

Like Saleor's webhook transport it never raises on a delivery failure: each
send returns an ``Outcome`` (sent, refused for good, or transient) and the
caller alone decides what to retry. Connection failures come back as transient
outcomes with ``broken`` set, and the caller opens a new connection.

A message is committed by the server only when it answers the final "." of
DATA. ``send`` takes a ``Commit``: it starts it (the sender's Redis request
that marks the recipient "committing") just before the DATA command, waits
for its answer after the server's 354 (so the Redis round trip overlaps the
SMTP one), and sends body and dot only if it was granted. That mark is what
lets a resumed sender tell a recipient that surely did not get the message
(claimed, never committing) from one that might have (committing, no answer
recorded).
"""

from __future__ import annotations

import dataclasses
import re
import smtplib
import socket
import ssl
from collections.abc import Callable
from typing import Protocol

from .smtpurl import SmtpConfig

_LEADING_DOT = re.compile(rb"(?m)^\.")
_PLAIN_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+$")


def _path(address: str) -> str:
    # smtplib.quoteaddr runs the full RFC 5322 parser on every call (~50 us); subscriber
    # addresses are validated plain addr-specs, so they only need the angle brackets.
    return f"<{address}>" if _PLAIN_ADDRESS.match(address) else smtplib.quoteaddr(address)


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: str  # sent | refused | transient | doubt (the final "." went out, no answer came back)
    code: int | None = None
    detail: str = ""
    broken: bool = False  # the connection is unusable; open a new one


def _classify(code: int, reply: bytes | str, stage: str) -> Outcome:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    detail = f"{stage}: {code} {text}".strip()
    if 500 <= code < 600:
        return Outcome("refused", code, detail)
    return Outcome("transient", code, detail)


class Commit(Protocol):
    def start(self) -> None: ...          # send the request; do not wait
    def granted(self) -> bool: ...        # wait for the answer
    def abandon(self) -> None: ...        # the send failed before granted() was read


class CommitAborted(Exception):
    """``before_commit`` said no (the sender lost its lease): the message was not committed."""


class SmtpConnection:
    """One SMTP session; use as a context manager."""

    def __init__(self, config: SmtpConfig, local_hostname: str | None = None) -> None:
        self.config = config
        self.local_hostname = local_hostname
        self.smtp: smtplib.SMTP | None = None

    def __enter__(self) -> "SmtpConnection":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        cfg = self.config
        if cfg.security == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(cfg.host, cfg.port, local_hostname=self.local_hostname,
                                                  timeout=cfg.timeout, context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(cfg.host, cfg.port, local_hostname=self.local_hostname, timeout=cfg.timeout)
        try:
            # The body and the final dot go out as two writes (see before_commit); without
            # TCP_NODELAY, Nagle holds the dot until the body is ACKed: 40 ms per message.
            smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            smtp.ehlo()
            if cfg.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
                smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                smtp.ehlo()
            if cfg.username:
                smtp.login(cfg.username, cfg.password or "")
        except Exception:
            smtp.close()
            raise
        self.smtp = smtp

    def close(self) -> None:
        if self.smtp is None:
            return
        try:
            self.smtp.quit()
        except (smtplib.SMTPException, OSError):
            self.smtp.close()
        self.smtp = None

    def abort(self) -> None:
        """Drop the connection without QUIT: an unfinished DATA is discarded by the server."""
        if self.smtp is not None:
            self.smtp.close()
            self.smtp = None

    def send(self, sender: str, recipient: str, data: bytes, commit: Commit | None = None,
             while_waiting: Callable[[], None] | None = None) -> Outcome:
        """Send one message; ``while_waiting`` runs while the server digests it (prepare the next one there)."""
        smtp = self.smtp
        if smtp is None:
            return Outcome("transient", None, "not connected", broken=True)
        dot_sent = False
        try:
            smtp.putcmd("mail", f"FROM:{_path(sender)}")
            code, reply = smtp.getreply()
            if code != 250:
                smtp.rset()
                return _classify(code, reply, "MAIL FROM")
            smtp.putcmd("rcpt", f"TO:{_path(recipient)}")
            code, reply = smtp.getreply()
            if code not in (250, 251):
                smtp.rset()
                return _classify(code, reply, "RCPT TO")
            body = _LEADING_DOT.sub(b"..", data)
            if not body.endswith(b"\r\n"):
                body += b"\r\n"
            started = False
            try:
                if commit is not None:
                    commit.start()
                    started = True
                smtp.putcmd("data")
                code, reply = smtp.getreply()
                granted = commit.granted() if commit is not None else True
                started = False
            finally:
                if started:
                    commit.abandon()
            if not granted:
                self.abort()  # DATA begun, no dot: the server discards it
                raise CommitAborted(f"not committing the message to {recipient}: the edition lease was lost")
            if code != 354:
                smtp.rset()
                return _classify(code, reply, "DATA")
            dot_sent = True
            smtp.send(body + b".\r\n")
            if while_waiting is not None:
                while_waiting()
            code, reply = smtp.getreply()
            if code != 250:
                return _classify(code, reply, "end of DATA")
            return Outcome("sent", code, reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply))
        except (OSError, smtplib.SMTPException) as exc:
            self.abort()
            # Past the final dot the server may have committed the message: never retry that.
            return Outcome("doubt" if dot_sent else "transient", None, f"{type(exc).__name__}: {exc}", broken=True)
