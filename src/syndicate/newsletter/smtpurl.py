"""SMTP settings from one URL (pure).

    smtp://host:port              plain (port 25 by default), STARTTLS if ?starttls=true
    smtp+starttls://host:587      STARTTLS required
    smtps://user:pass@host:465    TLS from the first byte
    ...?timeout=30                socket timeout in seconds

User and password are percent-decoded, so ``p%40ss`` is ``p@ss``.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import ConfigError

_DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


@dataclasses.dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    security: str  # none | starttls | ssl
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0

    def redacted(self) -> str:
        user = f"{self.username}:***@" if self.username else ""
        return f"{self.security}://{user}{self.host}:{self.port}"


def parse_smtp_url(url: str) -> SmtpConfig:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ConfigError(
            f"SYNDICATE_SMTP_URL ({parts.scheme or 'no'} scheme) is not an SMTP URL; use smtp://host:port, "
            "smtp+starttls://user:pass@host:587 or smtps://user:pass@host:465"
        )
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    security = {"smtp": "none", "smtp+starttls": "starttls", "smtps": "ssl"}[scheme]
    if scheme == "smtp" and query.get("starttls", "").lower() in ("1", "true", "yes"):
        security = "starttls"
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
        timeout = float(query.get("timeout", 30))
    except ValueError as exc:
        raise ConfigError(f"SYNDICATE_SMTP_URL has a bad port or timeout: {exc}") from None
    return SmtpConfig(
        host=parts.hostname,
        port=port,
        security=security,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        timeout=timeout,
    )
