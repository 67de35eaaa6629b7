"""Partner webhooks: signed notifications with durable retries (Standard Webhooks v1).

The package keeps each concern in its own small module, as Saleor's webhook
code does, so the pure parts can be tested with plain inputs:

    pure (no Redis, no HTTP, no Celery)
        payload.py    event record -> the exact body bytes a partner receives
        signing.py    whsec_ secrets and the v1 signature header
        guard.py      SSRF policy: which URLs and resolved addresses may be reached
        outcome.py    the value an attempt returns (status, latency, error, body)
        policy.py     the one place that decides: done, retry when, dead, disable
    adapters
        transport.py  requests.Session with the guard wired in at connection time
        registry.py   partners in Redis (config, secrets, health)
        deliveries.py delivery records, the attempt log and the durable schedule
        service.py    dispatch, attempt, drain, resend, recover, ping

Workers (``syndicate/workers/webhooks.py``) call only ``service``.
"""

from __future__ import annotations

from .guard import BlockedDestination, Guard
from .outcome import Outcome
from .signing import new_secret, sign

__all__ = ["BlockedDestination", "Guard", "Outcome", "new_secret", "sign"]
