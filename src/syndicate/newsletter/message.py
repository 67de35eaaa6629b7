"""The email message of an edition, built once and stamped per subscriber (pure).

Each subscriber's copy differs only in To, Message-ID, List-Unsubscribe and the
unsubscribe link inside both parts. Rendering and encoding 100 KB of HTML per
subscriber would cost more than the SMTP exchange itself, so ``EditionMessage``
encodes both parts once, as quoted-printable segments split where the link
goes, and each copy is a join of bytes: the link is encoded on its own and a
soft line break ("=" CRLF) keeps every segment starting on a fresh line, so
the joined body is valid quoted-printable whatever the link's length.

Headers: From, Reply-To, To, Subject, Date, Message-ID (on the sender's
domain, deterministic per edition and subscriber, so a copy resent after a
crash is recognisably the same message), MIME-Version, List-Id,
List-Unsubscribe (https and mailto) and List-Unsubscribe-Post (RFC 8058).
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from email import policy, quoprimime
from email.message import EmailMessage
from email.utils import formatdate
from urllib.parse import quote

from .edition import UNSUBSCRIBE_PLACEHOLDER
from . import headers
from .listconfig import parse_from, sender_domain

CRLF = b"\r\n"
_POLICY = policy.SMTP.clone(max_line_length=78)


def _qp(text: str) -> bytes:
    # quoprimime works on "bytes as latin-1 text"; that is how email.contentmanager feeds it.
    raw = text.replace("\r\n", "\n").encode("utf-8").decode("latin-1")
    return quoprimime.body_encode(raw, maxlinelen=76, eol="\r\n").encode("ascii")


def _segments(text: str) -> list[bytes]:
    """Encoded pieces of ``text`` between unsubscribe placeholders, each ready to be followed by a link."""
    parts = text.split(UNSUBSCRIBE_PLACEHOLDER)
    out = []
    for i, part in enumerate(parts):
        encoded = _qp(part)
        if i < len(parts) - 1:
            encoded += b"=" + CRLF  # soft break: the link starts on a line of its own
        out.append(encoded)
    return out


def message_id(edition_id: str, subscriber_id: str, domain: str) -> str:
    edition_hash = hashlib.sha256(edition_id.encode()).hexdigest()[:20]
    return f"<{edition_hash}.{subscriber_id}@{domain}>"


def mailto_unsubscribe(address: str, token: str) -> str:
    return f"mailto:{address}?subject={quote('unsubscribe ' + token)}"


def _mailbox(name: str, value: str) -> bytes:
    display, address = parse_from(value)
    return headers.mailbox(name, display, address)


@dataclasses.dataclass(frozen=True)
class Copy:
    """One subscriber's message: envelope and the exact bytes to send."""

    sender: str
    recipient: str
    message_id: str
    data: bytes


class EditionMessage:
    """An edition as a message template; ``copy_for`` makes each subscriber's bytes."""

    def __init__(self, list_config: dict, edition_id: str, subject: str, html: str, text: str,
                 default_from: str, date: float | None = None) -> None:
        from_value = list_config.get("fromAddress") or default_from
        _, self.sender = parse_from(from_value)
        self.domain = sender_domain(self.sender)
        self.edition_id = edition_id
        self.unsubscribe_address = list_config.get("unsubscribeMailto") or f"unsubscribe@{self.domain}"
        boundary = "=_syndicate_" + secrets.token_hex(12)
        # Every header is written by headers.py: newsroom and list text never meets a header parser.
        head = [
            _mailbox("From", from_value),
            headers.unstructured("Subject", subject),
            headers.raw("Date", formatdate(date, localtime=False, usegmt=True)),
            headers.raw("MIME-Version", "1.0"),
            headers.list_id(list_config["name"], f"{list_config['id']}.{self.domain}"),
            headers.raw("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            headers.raw("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
        ]
        if list_config.get("replyTo"):
            head.insert(1, _mailbox("Reply-To", list_config["replyTo"]))
        self._head = b"".join(head)
        part_head = "--{b}\r\nContent-Type: text/{kind}; charset=\"utf-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        self._pieces: list[bytes] = [b"This is a multi-part message in MIME format.\r\n\r\n"]
        self._slots: list[int] = []  # indexes in _pieces where the link goes
        for kind, body in (("plain", text), ("html", html)):
            self._pieces.append(part_head.format(b=boundary, kind=kind).encode("ascii"))
            segments = _segments(body)
            for i, segment in enumerate(segments):
                self._pieces.append(segment)
                if i < len(segments) - 1:
                    self._slots.append(len(self._pieces))
                    self._pieces.append(b"")
            self._pieces.append(CRLF)
        self._pieces.append(f"--{boundary}--\r\n".encode("ascii"))

    def copy_for(self, recipient: str, subscriber_id: str, unsubscribe_url: str, unsubscribe_token: str) -> Copy:
        mid = message_id(self.edition_id, subscriber_id, self.domain)
        mailto = mailto_unsubscribe(self.unsubscribe_address, unsubscribe_token)
        head = b"".join((
            self._head,
            b"To: ", recipient.encode("ascii"), CRLF,
            b"Message-ID: ", mid.encode("ascii"), CRLF,
            b"List-Unsubscribe: <", unsubscribe_url.encode("ascii"), b">,", CRLF,
            b" <", mailto.encode("ascii"), b">", CRLF,
            CRLF,
        ))
        link = _qp(unsubscribe_url) + b"=" + CRLF
        pieces = list(self._pieces)
        for slot in self._slots:
            pieces[slot] = link
        return Copy(self.sender, recipient, mid, head + b"".join(pieces))


def simple_message(from_value: str, recipient: str, subject: str, text: str, html: str | None = None,
                   extra_headers: dict[str, str] | None = None) -> tuple[str, bytes]:
    """A one-off message (the subscription confirmation): (envelope sender, bytes).

    The email package builds only the MIME body here; the headers that carry list
    text are written by headers.py, like an edition's.
    """
    _, sender = parse_from(from_value)
    body = EmailMessage(policy=_POLICY)
    body.set_content(text, cte="quoted-printable")
    if html is not None:
        body.add_alternative(html, subtype="html", cte="quoted-printable")
    head = [
        _mailbox("From", from_value),
        headers.raw("To", headers.address_spec(recipient)),
        headers.unstructured("Subject", subject),
        headers.raw("Date", formatdate(usegmt=True)),
        headers.raw("Message-ID", f"<{secrets.token_hex(12)}@{sender_domain(sender)}>"),
    ]
    head += [headers.raw(name, value) for name, value in (extra_headers or {}).items()]
    # as_bytes() starts with the body's own MIME headers (MIME-Version, Content-Type): ours go first.
    return sender, b"".join(head) + body.as_bytes()
