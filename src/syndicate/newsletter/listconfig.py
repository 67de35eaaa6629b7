"""A newsletter list's configuration: validation and defaults (pure).

The wire format is ``src/syndicate/schemas/newsletter.schema.json``; on top of the schema we
check what a schema cannot: the cron expression, the time zone, the From
address and that the subject template compiles. Every problem comes back with
its JSON path, like an invalid article.
"""

from __future__ import annotations

import re
from email.headerregistry import Address
from typing import Any

from jinja2 import TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from ..errors import Problem, ValidationFailed
from ..schemas import problems as schema_problems
from . import cron, headers

DEFAULT_SUBJECT = "{{ list_name }} — {{ date }}: {{ top_headline }}"
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")

# Subject and preheader templates come from admins over the API: sandbox them.
_SANDBOX = SandboxedEnvironment(autoescape=False)


def normalize_email(raw: str) -> str:
    """A subscriber address, trimmed, domain lowercased; ValidationFailed if it is not one.

    Addresses are ASCII only: editions go out without SMTPUTF8.
    """
    text = (raw or "").strip()
    if len(text) > 254 or not _EMAIL.match(text):
        raise ValidationFailed([Problem("$.email", f"{text!r} is not an email address (ASCII, name@domain.tld)")])
    local, _, domain = text.rpartition("@")
    return f"{local}@{domain.lower()}"


def parse_from(value: str) -> tuple[str, str]:
    """(display name, address) of ``Name <user@domain>`` or ``user@domain``; ValueError if there is no address.

    Read literally, not with email.utils.parseaddr: that parser applies RFC 5322
    syntax (groups, comments, encoded words) to the display name, and a list's
    display name is text to show; headers.py writes it back encoded as such.
    """
    text = (value or "").strip()
    name, address = "", text
    if text.endswith(">") and "<" in text:
        name, _, address = text[:-1].rpartition("<")
        name, address = name.strip(), address.strip()
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = re.sub(r"\\(.)", r"\1", name[1:-1])
    if "@" not in address or any(c.isspace() or c in '<>"(),;:' for c in address):
        raise ValueError(f"{value!r} has no email address; write it as 'Name <user@domain>'")
    return name, address


def sender_domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


def subject_template(source: str):
    return _SANDBOX.from_string(source)


def problems(doc: Any, default_from: str | None = None) -> list[Problem]:
    found = schema_problems("newsletter", doc)
    if found or not isinstance(doc, dict):
        return found
    try:
        cron.parse(doc["schedule"])
    except cron.CronError as exc:
        found.append(Problem("$.schedule", str(exc)))
    try:
        cron.zone(doc["timezone"])
    except cron.CronError as exc:
        found.append(Problem("$.timezone", str(exc)))
    for field in ("fromAddress", "replyTo"):
        if field in doc:
            try:
                _, address = parse_from(doc[field])
                Address(addr_spec=address)
                headers.address_spec(address)  # editions go out without SMTPUTF8: ASCII only
            except Exception as exc:  # email's parser raises several types; all mean "not an address"
                found.append(Problem(f"$.{field}", str(exc)))
    for field in ("subject", "preheader"):
        if field in doc:
            try:
                subject_template(doc[field])
            except TemplateSyntaxError as exc:
                found.append(Problem(f"$.{field}", f"template error: {exc.message} (line {exc.lineno})"))
    return found


def validate(doc: Any) -> dict[str, Any]:
    """The list with defaults filled in; ValidationFailed listing every problem."""
    found = problems(doc)
    if found:
        raise ValidationFailed(found)
    return with_defaults(doc)


def with_defaults(doc: dict[str, Any]) -> dict[str, Any]:
    out = dict(doc)
    out.setdefault("sections", [])
    out.setdefault("grouping", "newest")
    out.setdefault("subject", DEFAULT_SUBJECT)
    return out


def wants_section(config: dict[str, Any], section: str | None) -> bool:
    wanted = {s.casefold() for s in config.get("sections") or ()}
    return not wanted or (section or "").casefold() in wanted
