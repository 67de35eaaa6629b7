"""What one delivery attempt came to (pure value, built by the transport).

The transport never raises on an HTTP failure; it fills one of these and the
retry policy reads it. ``status`` is None when no HTTP response arrived
(refused by the SSRF guard, DNS, connect or read timeout, reset).
"""

from __future__ import annotations

import dataclasses

RESPONSE_BODY_LIMIT = 4096  # bytes of the partner's answer kept in the log


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: int | None
    latency_ms: float
    error: str | None = None
    response_body: str = ""
    retry_after: str | None = None  # the raw Retry-After header, parsed by the policy
    blocked: bool = False  # refused by the SSRF guard before any byte was sent

    @property
    def ok(self) -> bool:
        # Standard Webhooks: 2xx is success, anything else (3xx included) is failure.
        return self.status is not None and 200 <= self.status < 300

    def summary(self) -> str:
        if self.ok:
            return f"HTTP {self.status}"
        if self.status is not None:
            return f"HTTP {self.status}" + (f": {self.error}" if self.error else "")
        return self.error or "no response"

    def as_dict(self) -> dict[str, object]:
        return {
            "status_code": self.status,
            "latency_ms": round(self.latency_ms, 2),
            "error": self.error,
            "response_body": self.response_body,
            "retry_after": self.retry_after,
        }
