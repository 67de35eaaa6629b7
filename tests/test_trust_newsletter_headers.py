"""Newsroom and list text is inert in every header and body part of an email (issue 8, class 2).

Each text that reaches a message is tried on its own with hostile content: an
RFC 2047 encoded word that decodes to CR/LF + Bcc, raw CR/LF, the Unicode line
and paragraph separators and C0/C1 controls, and markup. Every copy is
received over real SMTP (aiosmtpd) and read twice: by Python's email parser
(policy=default) and by a strict check of the raw bytes (exactly the headers we
set, no other header line, each text decoding back to the literal input).
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from email.header import decode_header, make_header
import html.parser
import json
import re
import unicodedata

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from conftest import ADMIN_AUTH, unique_article
from newsletter_fixtures import addresses, make_list, publish, smtp_sink, subscribe_all

from syndicate.newsletter import headers, render, service
from syndicate.newsletter.edition import Edition, story
from syndicate.newsletter.headers import one_line
from syndicate.newsletter.message import EditionMessage, simple_message
from syndicate.store import get_redis, key

ENCODED_BCC = "=?utf-8?q?x=0D=0ABcc:_evil@example.com?="
# Every character class the issue names, and markup; the encoded word needs no control at all.
BREAKERS = "\r\n\u2028\u2029\u0085\x0b\x0c\x1c\x1d\x1e\x07\x1b\x00\x9b\t"
HOSTILE = f"Ünï {ENCODED_BCC} a\r\nBcc: evil2@example.com\u2028b\u2029c\x85d\x0be\x0cf\x1cg\x1dh\x1ei\x07j\x1bk\x00l <b onmouseover=alert(1)>x</b> end"
EDITION_HEADERS = {"From", "Subject", "Date", "MIME-Version", "List-Id", "List-Unsubscribe-Post", "Content-Type",
                   "To", "Message-ID", "List-Unsubscribe"}


@pytest.fixture()
def sink(redis_client):
    return smtp_sink()


# --- the two readings of a received message ------------------------------------

def header_names(raw: bytes) -> list[str]:
    """The header names of the raw header block; fails on any line that is neither a header nor a fold."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    names = []
    for line in head.split(b"\r\n"):
        assert all(32 <= b < 127 or b == 9 for b in line), f"non-ASCII or control byte in header line {line!r}"
        assert len(line) <= 998
        if line[:1] in (b" ", b"\t"):
            assert names, "a continuation line before any header"
            continue
        match = re.match(rb"^([!-9;-~]+):", line)
        assert match, f"not a header line: {line!r}"
        names.append(match.group(1).decode())
    return names


def _raw_value(raw: bytes, name: str) -> str:
    """The unfolded raw value of header ``name``."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii").replace("\r\n ", " ")
    return next(line.split(":", 1)[1].strip() for line in head.split("\r\n") if line.startswith(name + ":"))


def parts(msg: email.message.EmailMessage) -> tuple[str, str]:
    text, html_part = msg.iter_parts()
    return text.get_content(), html_part.get_content()


class _Visible(html.parser.HTMLParser):
    """What a mail client shows or acts on: text, attribute values, and the tags' own attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.attrs: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.attrs += [(tag, name, value or "") for name, value in attrs]

    def handle_data(self, data):
        self.text.append(data)


def visible(document: str) -> _Visible:
    parser = _Visible()
    parser.feed(document)
    parser.close()
    return parser


def assert_inert_text_part(text: str, expected: str) -> None:
    # Only CRLF ends a line: no control, NEL or Unicode separator splits one in any reader.
    text = text.replace("\r\n", "\n")
    assert text.splitlines() == text.rstrip("\n").split("\n")
    assert not [c for c in text if unicodedata.category(c) in ("Cc", "Zl", "Zp") and c != "\n"]
    assert any(expected in line for line in text.split("\n")), f"{expected!r} not on one line of the text part"
    assert not any(line.startswith("Bcc:") for line in text.split("\n"))


def assert_inert_html(document: str, expected: str, attribute: str | None = None) -> None:
    assert not [c for c in document if unicodedata.category(c) in ("Cc", "Zl", "Zp") and c not in "\n\r\t"]
    page = visible(document)
    assert not [a for a in page.attrs if a[1].startswith("on")], "markup from the newsroom became live"
    assert not any(tag == "b" for tag, _, _ in page.attrs)
    if attribute:
        assert expected in [value for _, name, value in page.attrs if name == attribute]
    else:
        assert expected in "".join(page.text)


def check_copy(raw: bytes, expected_headers: set[str]) -> email.message.EmailMessage:
    names = header_names(raw)
    assert sorted(names) == sorted(expected_headers), "the header block holds exactly the headers we set"
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert set(msg.keys()) == expected_headers and not msg.defects
    assert "Bcc" not in msg and "evil" not in str(msg.get("To"))
    return msg


# --- field by field, over real SMTP --------------------------------------------------

def _send_one(config: dict, article: dict, raw_list: dict | None = None) -> tuple[str, bytes]:
    """Publish ``article`` to the list, send an edition to one reader; (reader, raw bytes received)."""
    if raw_list is not None:
        # As if an older release had stored it: the renderer alone must neutralise it.
        get_redis().hset(key("nl", "list", config["id"]), "config", json.dumps({**config, **raw_list}))
    publish(article)
    reader = addresses(1, "hostile")[0]
    subscribe_all(config["id"], [reader])
    result = service.run_edition(service.open_manual(config["id"]))
    assert result["state"] == "sent" and result["counts"]["sent"] == 1
    (raw,) = smtp_sink().raw(reader)
    return reader, raw


def _with_image(article: dict, **fields: str) -> dict:
    image = {"url": "https://img.example/lead.jpg", "alt": "Alt text", "role": "lead", "caption": "A caption",
             "credit": "A credit", "width": 1200, "height": 800}
    image.update(fields)
    article["images"] = [image]
    return article


BODY_FIELDS = {
    # field: (how to put HOSTILE into the article, where it lands in the HTML: None = text, else attribute)
    "headline": (lambda a: a.update(headline=HOSTILE), None),
    "summary": (lambda a: (a.update(summary=HOSTILE), a.pop("quickLooks", None)), None),
    "quick look": (lambda a: a["quickLooks"].update(items=["first", HOSTILE]), None),
    "quick looks title": (lambda a: a["quickLooks"].update(title=HOSTILE), None),
    "caption": (lambda a: _with_image(a, caption=HOSTILE), None),
    "credit": (lambda a: _with_image(a, credit=HOSTILE), None),
    "alt": (lambda a: _with_image(a, alt=HOSTILE), "alt"),
}


@pytest.mark.parametrize("field", sorted(BODY_FIELDS))
def test_story_text_is_inert_in_every_part_field_by_field(sink, field):
    config = make_list(subject="{{ list_name }}: {{ top_headline }}")
    article = unique_article(section=config["sections"][0])
    put, attribute = BODY_FIELDS[field]
    put(article)
    reader, raw = _send_one(config, article)
    msg = check_copy(raw, EDITION_HEADERS)
    assert msg["To"] == reader
    expected = one_line(HOSTILE)
    text, document = parts(msg)
    if field == "headline":
        assert msg["Subject"] == f"Morning Edition: {expected}"  # the encoded word arrives literally
        assert ENCODED_BCC in msg["Subject"]
    if field != "alt":  # alt text is for the HTML only
        assert_inert_text_part(text, expected)
    assert_inert_html(document, expected, attribute)


def test_the_section_label_is_inert_in_every_part(sink):
    section = f"Sec{dt.datetime.now().microsecond}\u2028x\x85y"
    config = make_list(sections=[section], grouping="section",
                       subject="{{ sections }} {{ list_name }}", preheader="{{ sections }}")
    _reader, raw = _send_one(config, unique_article(section=section))
    msg = check_copy(raw, EDITION_HEADERS)
    assert msg["Subject"] == f"{one_line(section)} Morning Edition"
    text, document = parts(msg)
    assert_inert_text_part(text, one_line(section).upper())
    assert_inert_html(document, one_line(section))


def test_list_settings_are_inert_in_from_reply_to_list_id_subject_and_preheader(sink):
    config = make_list(replyTo="Desk <desk@newslooks.example>")
    stored = {"name": HOSTILE, "fromAddress": f'"{ENCODED_BCC} \u2028x" <news@newslooks.example>',
              "replyTo": f"{ENCODED_BCC}\x85 <replies@newslooks.example>",
              "subject": "{{ list_name }} " + ENCODED_BCC, "preheader": "Pre " + HOSTILE}
    _reader, raw = _send_one(config, unique_article(section=config["sections"][0]), raw_list=stored)
    msg = check_copy(raw, EDITION_HEADERS | {"Reply-To"})
    name = one_line(HOSTILE)
    assert msg["Subject"] == f"{name} {ENCODED_BCC}"
    (sender,) = msg["From"].addresses
    assert (sender.display_name, sender.addr_spec) == (f"{ENCODED_BCC} x", "news@newslooks.example")
    (reply,) = msg["Reply-To"].addresses
    assert (reply.display_name, reply.addr_spec) == (ENCODED_BCC, "replies@newslooks.example")
    list_id = msg["List-Id"]
    assert list_id == f"{name} <{config['id']}.newslooks.example>"
    text, document = parts(msg)
    assert_inert_text_part(text, name)
    assert_inert_html(document, name)
    assert_inert_html(document, "Pre " + name)  # the preheader


def test_the_confirmation_email_is_inert_too(sink):
    subject = f"Confirm your subscription to {HOSTILE}"
    sender, raw = simple_message(f"{ENCODED_BCC} <news@newslooks.example>", "reader@mail.example", subject,
                                 "text", "<p>html</p>")
    msg = check_copy(raw, {"From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"})
    assert sender == "news@newslooks.example"
    assert msg["Subject"] == one_line(subject)
    assert msg["From"].addresses[0].display_name == ENCODED_BCC


def test_a_list_name_with_a_raw_line_break_is_refused_with_its_path(api_server, http):
    base = f"{api_server}/v1/newsletters/crlf-list"
    good = {"name": "Morning", "schedule": "0 7 * * *", "timezone": "UTC"}
    cases = {"name": "Morning\r\nBcc: evil@example.com", "fromAddress": "Desk\n <desk@news.example>",
             "replyTo": "Desk\u2028 <desk@news.example>", "subject": "A\x85B", "preheader": "A\x0bB"}
    for field, value in cases.items():
        response = http.put(base, json={**good, field: value}, headers=ADMIN_AUTH)
        assert response.status_code == 422, field
        assert [p["path"] for p in response.json()["problems"]] == [f"$.{field}"]
    for char in BREAKERS:
        response = http.put(base, json={**good, "name": f"Morning{char}Edition"}, headers=ADMIN_AUTH)
        assert response.status_code == 422 and response.json()["problems"][0]["path"] == "$.name", repr(char)
    assert http.put(base, json={**good, "name": f"Morning {ENCODED_BCC}"}, headers=ADMIN_AUTH).status_code in (200, 201)


# --- a property over any text, pure -------------------------------------------------

def _edition(text: str) -> Edition:
    config = {"id": "prop", "name": text or "x", "schedule": "0 7 * * *", "timezone": "UTC",
              "subject": "{{ list_name }}|{{ top_headline }}", "preheader": "{{ top_headline }}",
              "fromAddress": "Desk <desk@news.example>"}
    article = unique_article(section="US", headline=text or "x", summary=text or "x")
    article["quickLooks"] = {"title": text or "x", "items": [text or "x"]}
    _with_image(article, alt=text or "x", caption=text or "x", credit=text or "x")
    return Edition("prop.1", config, [story(article)], dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
                   "https://news.example")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.characters(), st.sampled_from([*BREAKERS, "=?", "?=", " ", ":", "<b>", ENCODED_BCC])),
                max_size=60).map("".join))
@example("0 \xa0")
def test_any_text_arrives_literally_and_never_adds_a_header_or_a_line(text):
    edition = _edition(text)
    rendered = render.render(edition)
    config = {**edition.list, "replyTo": "Desk <desk@news.example>"}
    message = EditionMessage(config, "prop.1", rendered.subject, rendered.html, rendered.text,
                             "Desk <desk@news.example>", date=0)
    raw = message.copy_for("reader@mail.example", "sid1", "https://news.example/unsubscribe/t", "t").data
    msg = check_copy(raw, EDITION_HEADERS | {"Reply-To"})
    line = one_line(text or "x")
    assert msg["Subject"] == f"{line}|{line}"
    assert msg["List-Id"] == (f"{line} <prop.news.example>" if line else "<prop.news.example>")
    text_part, document = parts(msg)
    assert_inert_text_part(text_part, line)
    assert not [c for c in document if unicodedata.category(c) in ("Cc", "Zl", "Zp") and c not in "\n\r\t"]
    assert not [a for a in visible(document).attrs if a[1].startswith("on")]
    # A display name can be any text too (From, Reply-To): it decodes back to itself, beside its address.
    block = headers.mailbox("From", text, "desk@news.example") + headers.unstructured("Subject", text) + b"\r\n"
    assert header_names(block) == ["From", "Subject"]
    parsed = email.message_from_bytes(block, policy=email.policy.default)
    (sender,) = parsed["From"].addresses
    name = sender.display_name
    if name != one_line(text):
        # CPython's address parser keeps the space between two encoded words, which RFC 2047
        # section 6.2 says to drop (a long name takes several words), and drops a trailing
        # no-break space decoded from a word: read the phrase as the RFC says instead.
        phrase = _raw_value(block, "From")
        assert phrase.startswith("=?utf-8?b?"), phrase
        name = str(make_header(decode_header(phrase.rsplit(" <", 1)[0])))
    assert (name, sender.addr_spec) == (one_line(text), "desk@news.example")
    assert parsed["Subject"] == one_line(text)


def test_a_lone_surrogate_in_a_stored_record_still_makes_a_valid_message():
    edition = _edition("head\ud800line")
    rendered = render.render(edition)
    message = EditionMessage(edition.list, "prop.1", rendered.subject, rendered.html, rendered.text,
                             "Desk <desk@news.example>", date=0)
    raw = message.copy_for("reader@mail.example", "sid1", "https://news.example/unsubscribe/t", "t").data
    msg = check_copy(raw, EDITION_HEADERS)
    assert msg["Subject"] == "head\ufffdline|head\ufffdline"
    assert_inert_text_part(parts(msg)[0], "head\ufffdline")
