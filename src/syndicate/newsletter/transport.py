"""The SMTP transport: one connection, many messages, an outcome per message.

Like Saleor's webhook transport it never raises on a delivery failure: each
send returns an ``Outcome`` (sent, refused for good, or transient) and the
caller alone decides what to retry. Connection failures come back as transient
outcomes with ``broken`` set, and the caller opens a new connection.

A message is committed by the server only when it answers the final "." of
DATA. ``send`` calls ``before_commit`` after the body went out and before that
dot: the sender records "committing" there, which is what lets a resumed
sender tell a recipient that surely did not get the message (claimed, never
committing) from one that might have (committing, no answer recorded).
"""

from __future__ import annotations

import dataclasses
import re
import smtplib
import ssl
from collections.abc import Callable

from .smtpurl import SmtpConfig

_LEADING_DOT = re.compile(rb"(?m)^\.")


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
            smtp.ehlo()
            if cfg.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
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

    def send(self, sender: str, recipient: str, data: bytes,
             before_commit: Callable[[], bool] | None = None) -> Outcome:
        smtp = self.smtp
        if smtp is None:
            return Outcome("transient", None, "not connected", broken=True)
        dot_sent = False
        try:
            code, reply = smtp.mail(sender)
            if code != 250:
                smtp.rset()
                return _classify(code, reply, "MAIL FROM")
            code, reply = smtp.rcpt(recipient)
            if code not in (250, 251):
                smtp.rset()
                return _classify(code, reply, "RCPT TO")
            smtp.putcmd("data")
            code, reply = smtp.getreply()
            if code != 354:
                smtp.rset()
                return _classify(code, reply, "DATA")
            body = _LEADING_DOT.sub(b"..", data)
            if not body.endswith(b"\r\n"):
                body += b"\r\n"
            smtp.send(body)
            if before_commit is not None and not before_commit():
                self.abort()
                raise CommitAborted(f"not committing the message to {recipient}: the edition lease was lost")
            dot_sent = True
            smtp.send(b".\r\n")
            code, reply = smtp.getreply()
            if code != 250:
                return _classify(code, reply, "end of DATA")
            return Outcome("sent", code, reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply))
        except (OSError, smtplib.SMTPException) as exc:
            self.abort()
            # Past the final dot the server may have committed the message: never retry that.
            return Outcome("doubt" if dot_sent else "transient", None, f"{type(exc).__name__}: {exc}", broken=True)
