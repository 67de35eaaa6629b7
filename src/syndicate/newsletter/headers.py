"""Email header lines written by syndicate itself, and text made inert for one line (pure).

Newsroom and list text reaches headers (Subject, the From and List-Id display
names, Reply-To) and must arrive as literal text. The email package's header
factories parse what they are given: they read ``=?utf-8?q?...?=`` as an RFC
2047 encoded word, and before the 2024 fix (gh-121650) they decoded CR/LF out
of one and wrote it as header structure (a Bcc in every copy). So nothing here
goes through them: a value is written verbatim only when it is printable ASCII
with no ``=?`` in it, and otherwise as base64 encoded words that we write
ourselves. A parser can then only ever decode our words back to the exact
text, whatever the Python patch level.

``one_line`` is the other half: C0 and C1 controls and the Unicode line and
paragraph separators (which some clients render as breaks) become spaces, so
neither a header nor a line of the text part can be split by newsroom text.
"""

from __future__ import annotations

import base64
import re
import unicodedata

MAX_LINE = 78
# An encoded word is at most 75 characters (RFC 2047 section 2): "=?utf-8?b?" + 60 + "?=" = 72,
# and 60 base64 characters carry 45 bytes.
_WORD_BYTES = 45
# Matched with fullmatch: "$" would also accept a trailing newline.
_PLAIN = re.compile(r"[\x20-\x7e]*")
# What a display name may hold unquoted: atext and spaces (RFC 5322 section 3.2.3).
_ATEXT_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*")
# The addresses syndicate writes: plain ASCII addr-specs, as the list and subscriber checks accept.
_ADDR_SPEC = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9.-]{1,253}")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
_LIST_ID = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_SPACES = re.compile(r" {2,}")


# Cc: C0, DEL and C1 (NUL, BEL, VT, FF, ESC, FS/GS/RS, NEL...); Zl/Zp: U+2028, U+2029 -> a space.
# Cs: a lone surrogate (a corrupt record) cannot be encoded at all -> U+FFFD.
_REPLACE = {"Cc": " ", "Zl": " ", "Zp": " ", "Cs": "\ufffd"}


def one_line(text: object) -> str:
    """``text`` as one line of inert text: every control or line/paragraph separator a space, runs collapsed."""
    value = "" if text is None else str(text)
    if any(unicodedata.category(c) in _REPLACE for c in value):
        value = "".join(_REPLACE.get(unicodedata.category(c), c) for c in value)
    return _SPACES.sub(" ", value).strip(" ")


def _encoded_words(text: str) -> list[str]:
    """``text`` as base64 UTF-8 encoded words, never splitting a character between two words."""
    words, chunk, size = [], [], 0
    for char in text:
        n = len(char.encode("utf-8"))
        if size + n > _WORD_BYTES and chunk:
            words.append("".join(chunk))
            chunk, size = [], 0
        chunk.append(char)
        size += n
    if chunk:
        words.append("".join(chunk))
    return ["=?utf-8?b?" + base64.b64encode(w.encode("utf-8")).decode("ascii") + "?=" for w in words]


def _plain_ok(text: str, pattern: re.Pattern[str]) -> bool:
    # Long unbreakable words would need a line over 78 characters; encoded words fold anywhere.
    return (bool(pattern.fullmatch(text)) and "=?" not in text
            and all(len(w) <= MAX_LINE - 20 for w in text.split(" ")))


def _fold(name: str, tokens: list[str]) -> bytes:
    """``name: tokens...`` folded at the spaces between tokens, CRLF-terminated."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a header name")
    lines, current = [], f"{name}:"
    for token in tokens:
        if len(current) + 1 + len(token) > MAX_LINE and current.strip() != f"{name}:":
            lines.append(current)
            current = ""
        current += " " + token
    lines.append(current)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def text_tokens(text: object, pattern: re.Pattern[str] = _PLAIN) -> list[str]:
    """The words of ``text`` as it goes into a header: verbatim when safe, else encoded words."""
    value = one_line(text)
    if not value:
        return []
    if _plain_ok(value, pattern):
        return value.split(" ")
    return _encoded_words(value)


def unstructured(name: str, text: object) -> bytes:
    """An unstructured header (Subject): the text arrives literally."""
    return _fold(name, text_tokens(text))


def phrase_tokens(text: object) -> list[str]:
    """A display name (RFC 5322 phrase): atoms, a quoted string, or encoded words.

    Printable ASCII that is not all atoms goes in a quoted string. Text holding
    "=?" never does: some parsers (CPython's among them) decode encoded words
    inside quoted strings, so it is encoded words, like any other text.
    """
    value = one_line(text)
    if not value:
        return []
    if _plain_ok(value, _ATEXT_PHRASE):
        return value.split(" ")
    if _plain_ok(value, _PLAIN):
        quoted = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{quoted}"'.split(" ")  # folded at its spaces: unfolding gives them back
    return _encoded_words(value)


def address_spec(address: str) -> str:
    if not _ADDR_SPEC.fullmatch(address or ""):
        raise ValueError(f"{address!r} is not a plain ASCII email address")
    return address


def mailbox_tokens(display_name: object, address: str) -> list[str]:
    """``Display Name <address>``: the name as a phrase of atoms or encoded words."""
    angle = f"<{address_spec(address)}>"
    return [*phrase_tokens(display_name), angle]


def mailbox(name: str, display_name: object, address: str) -> bytes:
    """An address header (From, Reply-To) with one mailbox."""
    return _fold(name, mailbox_tokens(display_name, address))


def list_id(display_name: object, list_id_value: str) -> bytes:
    """List-Id (RFC 2919): the list's name as a phrase, then its dotted id in angle brackets."""
    if not _LIST_ID.fullmatch(list_id_value):
        raise ValueError(f"{list_id_value!r} is not a list id")
    # Atoms or encoded words, never a quoted string: many readers take List-Id as unstructured text.
    return _fold("List-Id", [*text_tokens(display_name, _ATEXT_PHRASE), f"<{list_id_value}>"])


def raw(name: str, value: str) -> bytes:
    """A header whose value syndicate composed from checked ASCII parts (Date, Message-ID, URLs)."""
    if not _PLAIN.fullmatch(value):
        raise ValueError(f"{name} value {value!r} is not printable ASCII")
    return _fold(name, value.split(" ") if value else [])
