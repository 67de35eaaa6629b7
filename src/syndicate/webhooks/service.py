"""Webhook operations: dispatch an event, attempt a delivery, drain the schedule, resend, recover, ping.

These are the functions the Celery tasks, the CLI and the API call. Each takes
a ``Context`` (guard, retry schedule, timeouts), built from the settings by
default; tests pass their own (a short schedule, a guard without the loopback
allowance).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from .. import events, metrics
from ..config import get_settings
from ..errors import Conflict, NotFound
from ..store import get_redis
from . import deliveries, payload, policy, registry, signing, transport
from .guard import Guard
from .timeparse import iso

log = logging.getLogger("syndicate.webhooks")


@dataclasses.dataclass(frozen=True)
class Context:
    guard: Guard
    schedule: tuple[float, ...]
    connect_timeout: float
    read_timeout: float
    disable_after_seconds: float
    retention_seconds: int
    public_url: str

    @property
    def lease_seconds(self) -> float:
        # Longer than any attempt can take (connect + read + the capped answer read), so a
        # lease only runs out when the worker holding it died.
        return self.connect_timeout + 3 * self.read_timeout + 30


def context(**overrides: Any) -> Context:
    settings = get_settings()
    values = {
        "guard": Guard.from_settings(settings),
        "schedule": settings.webhook_retry_schedule,
        "connect_timeout": settings.webhook_connect_timeout,
        "read_timeout": settings.webhook_read_timeout,
        "disable_after_seconds": settings.webhook_disable_after_days * 86400,
        "retention_seconds": settings.delivery_retention_days * 86400,
        "public_url": settings.public_url,
    }
    values.update(overrides)
    return Context(**values)


# --- dispatch and attempts -------------------------------------------------

SKIPPED_REASON = "partner disabled"


class Unbuildable(Exception):
    """The logged event (or its article snapshot) cannot be turned into a webhook body.

    ``due`` holds the deliveries that were created for the other partners and
    are due now, so the caller still starts them; ``article_id`` names the story.
    """

    def __init__(self, message: str, due: list[tuple[str, str]] | None = None, article_id: str | None = None) -> None:
        super().__init__(message)
        self.due = due or []
        self.article_id = article_id


def _load_event(event_id: str, client: redis.Redis) -> dict[str, Any] | None:
    try:
        event = events.get_event(event_id, client)
    except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise Unbuildable(f"the logged event {event_id} is not readable JSON: {exc}") from exc
    if event is not None and not (isinstance(event, dict) and isinstance(event.get("type"), str)
                                  and isinstance(event.get("section"), str)):
        article_id = event.get("article_id") if isinstance(event, dict) else None
        raise Unbuildable(f"the logged event {event_id} lacks its type or section", article_id=article_id)
    return event


def _entry(event_id: str, event: dict[str, Any], partner: dict[str, Any], ctx: Context,
           bodies: dict[bool, str | Unbuildable] | None = None) -> dict[str, Any]:
    """One partner's delivery record. ``bodies`` caches the body per ``fullArticle`` flag: every
    partner of an event gets one of two bodies, so each is serialised once per event, not per partner."""
    full = bool(partner.get("fullArticle", False))
    bodies = {} if bodies is None else bodies
    if full not in bodies:
        try:
            bodies[full] = payload.encode(payload.event_body(event, ctx.public_url, full)).decode("utf-8")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            bodies[full] = Unbuildable(
                f"no webhook body can be built from event {event_id}: {type(exc).__name__}: {exc}")
            bodies[full].__cause__ = exc
    body = bodies[full]
    if isinstance(body, Unbuildable):
        raise body
    entry = {
        "id": deliveries.delivery_id(event_id, partner["name"]),
        "partner": partner["name"],
        "event_id": event_id,
        "type": event["type"],
        "article_id": event.get("article_id") or "",
        "body": body,
    }
    if not partner.get("enabled", True):
        # Recorded now with the body and webhook-id it would have carried, so that
        # `partners recover` can send exactly this once the partner is back.
        entry.update(status="skipped", failure_reason=SKIPPED_REASON,
                     last_error=f"{SKIPPED_REASON} ({partner.get('disabledReason') or 'by an operator'})")
    return entry


def dispatch(event_id: str, ctx: Context, client: redis.Redis | None = None) -> list[tuple[str, str]]:
    """Create one delivery per matching partner; returns (delivery id, partner) for those new and due now.

    Deliveries that already exist (a redelivered event) are not returned, so
    nothing is sent twice. With a first delay in the schedule, the deliveries
    wait in the schedule and nothing is returned. A disabled partner that wants
    the event gets a ``skipped`` delivery, sent later by ``recover``.

    Raises ``Unbuildable`` (after creating every delivery it could) when the
    event, or its body for some partner, cannot be built: the caller records it.
    """
    client = client or get_redis()
    event = _load_event(event_id, client)
    if event is None:
        return []
    wanted = [p for p in registry.all_partners(client) if registry.wants(p, event["type"], event["section"])]
    entries, broken = [], []
    bodies: dict[bool, str | Unbuildable] = {}
    for partner in wanted:
        try:
            entries.append(_entry(event_id, event, partner, ctx, bodies))
        except Unbuildable as exc:
            broken.append(f"{partner['name']}: {exc}")
    created: set[str] = set()
    immediate = ctx.schedule[0] <= 0
    if entries:
        # Due "now + lease" when we attempt at once: the schedule only catches an attempt that got lost.
        first_due = time.time() + (ctx.lease_seconds if immediate else policy.jittered(ctx.schedule[0]))
        created = set(deliveries.create(entries, first_due, ctx.retention_seconds, client))
    due = [(e["id"], e["partner"]) for e in entries if e["id"] in created and e.get("status") != "skipped"]
    due = due if immediate else []
    if broken:
        raise Unbuildable("; ".join(broken), due, event.get("article_id"))
    return due


def attempt(delivery_id: str, ctx: Context, client: redis.Redis | None = None,
            partner_name: str | None = None) -> dict[str, Any] | None:
    """Make one attempt if the delivery is pending and nobody else is on it; returns the attempt record.

    ``partner_name`` (when the caller knows it) saves a round trip: the claim loads the partner too.
    """
    client = client or get_redis()
    name = partner_name or deliveries.partner_of(delivery_id, client) or ""
    state, record, raw_partner = deliveries.claim_and_load(delivery_id, registry.record_key(name), ctx.lease_seconds, client)
    if state != "ok":
        return None
    probe = record.get("probe") == "1"
    partner = json.loads(raw_partner) if raw_partner else None
    if partner is None or not (partner.get("enabled") or probe):
        reason = (f"partner {name!r} was removed" if partner is None else
                  f"partner {name!r} is disabled ({partner.get('disabledReason') or 'by an operator'}); "
                  f"enable it, then `syndicate partners recover {name} --since TIME` re-sends what failed")
        note = {"n": int(record.get("attempts", 0)) + 1, "at": time.time(), "status_code": None, "latency_ms": 0,
                "error": reason, "response_body": "", "result": "failed", "sent": False}
        deliveries.finish(delivery_id, note, "failed", None, {"last_error": reason, "last_status_code": ""},
                          ctx.retention_seconds, client)
        metrics.webhook_attempt(name, "failed", "failed")
        return note
    body = record["body"].encode("utf-8")
    timestamp = int(time.time())
    signed = signing.headers(registry.live_secrets(partner), delivery_id, timestamp, body)
    headers = transport.request_headers(partner.get("headers") or {}, signed)
    outcome = transport.post(partner["url"], body, headers, ctx.guard, ctx.connect_timeout, ctx.read_timeout)
    now = time.time()
    failing_since = None
    if not probe and not outcome.ok:
        failing_since = _recorded(lambda: registry.record_failure(name, now, client))
    decision = policy.decide(
        outcome,
        int(record.get("round_attempts", 0)) + 1,
        (0.0,) if probe else ctx.schedule,
        failing_since,
        now,
        0 if probe else ctx.disable_after_seconds,
    )
    action = decision.action
    if action == "disable":
        if probe:
            action = "failed"
        else:
            _recorded(lambda: registry.set_enabled(name, False, decision.reason, client))
    status = {"succeeded": "succeeded", "retry": "pending"}.get(action, "failed")
    next_at = now + decision.delay if action == "retry" else None
    note = {
        "n": int(record.get("attempts", 0)) + 1,
        "at": now,
        "webhook_timestamp": timestamp,
        "url": partner["url"],
        **outcome.as_dict(),
        "result": action,
        "reason": decision.reason or None,
        "next_attempt_at": next_at,
        "sent": not outcome.blocked,
    }
    fields = {"last_status_code": outcome.status, "last_error": outcome.error, "last_attempt_at": now}
    if status == "failed":
        fields["failure_reason"] = decision.reason
    healthy = registry.health_key(name) if outcome.ok and not probe else None
    _recorded(lambda: deliveries.finish(delivery_id, note, status, next_at, fields, ctx.retention_seconds, client, healthy))
    metrics.webhook_attempt(name, action, status)
    return note


def _recorded(write: Callable[[], Any]) -> Any:
    """Run a write that records what an attempt did, retrying while Redis is unreachable.

    Once a partner has been sent a request, losing its outcome to a Redis
    restart would make the lease send it again; redis-py's own Retry waits for
    the store (exponential backoff capped at 2 s, about 25 s in all, well inside
    the lease) before the error reaches the caller and the lease takes over.
    """
    return Retry(ExponentialBackoff(cap=2.0, base=0.1), 15).call_with_retry(
        write, lambda error: log.warning("recording an attempt waits for the store: %s", error))


def drain(ctx: Context, limit: int = 500, client: redis.Redis | None = None, now: float | None = None) -> list[str]:
    """Take the deliveries whose time has come; the caller attempts each (the lease guards a lost one)."""
    return deliveries.take_due(time.time() if now is None else now, ctx.lease_seconds, limit, client)


# --- operator actions ------------------------------------------------------

def resend(delivery_id: str, ctx: Context, client: redis.Redis | None = None) -> None:
    """A new round of the schedule for one delivery, same webhook-id and body (the partner can dedupe)."""
    if not deliveries.restart(delivery_id, time.time() + ctx.lease_seconds, ctx.retention_seconds, client):
        raise NotFound(f"no delivery {delivery_id!r} (unknown, or older than the retention)")


def recover(partner: str, since: float, ctx: Context, client: redis.Redis | None = None) -> list[str]:
    """Resend every failed or skipped delivery to ``partner`` created since ``since``; returns their ids.

    A partner that is still disabled is refused (Conflict): its deliveries
    would only be skipped again, and the operator must know nothing was sent.
    """
    client = client or get_redis()
    record = registry.get(partner, client)
    if not record.get("enabled", True):
        raise Conflict(f"partner {partner!r} is disabled ({record.get('disabledReason') or 'by an operator'}); "
                       f"nothing was re-sent: run `syndicate partners enable {partner}` first, then recover")
    rows = deliveries.newest(partner=partner, since=since, limit=1_000_000, client=client)
    # Pings are probes, not deliveries a partner missed: they are never recovered.
    ids = [d["id"] for d in rows if d.get("status") in ("failed", "skipped")
           and float(d.get("created_at", 0)) >= since and d.get("probe") != "1"]
    for delivery_id in ids:
        resend(delivery_id, ctx, client)
    return ids


def ping(partner: str, ctx: Context, client: redis.Redis | None = None) -> dict[str, Any]:
    """Send a signed webhook.test event now, once, and return the delivery with its attempt."""
    client = client or get_redis()
    registry.get(partner, client)
    body = payload.encode(payload.test_body(partner, events.now_rfc3339())).decode("utf-8")
    delivery_id = deliveries.new_test_id()
    entry = {"id": delivery_id, "partner": partner, "event_id": "", "type": payload.TEST_EVENT, "probe": 1, "body": body}
    deliveries.create([entry], time.time() + ctx.lease_seconds, ctx.retention_seconds, client)
    attempt(delivery_id, ctx, client)
    return show(delivery_id, client)


# --- reading the log -------------------------------------------------------

_INTS = ("attempts", "round_attempts")


def present(record: dict[str, Any], with_body: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": record["id"],
        "partner": record.get("partner"),
        "type": record.get("type"),
        "event_id": record.get("event_id") or None,
        "article_id": record.get("article_id") or None,
        "status": record.get("status"),
        "attempts": int(record.get("attempts", 0)),
        "created_at": iso(record.get("created_at")),
        "last_attempt_at": iso(record.get("last_attempt_at")),
        "next_attempt_at": iso(record.get("next_attempt_at")) if record.get("status") == "pending" else None,
        "last_status_code": int(record["last_status_code"]) if record.get("last_status_code") else None,
        "last_error": record.get("last_error") or None,
        "failure_reason": record.get("failure_reason") or None,
        "test": record.get("probe") == "1",
    }
    if with_body:
        out["body"] = record.get("body")
    return out


def present_attempt(note: dict[str, Any]) -> dict[str, Any]:
    return {**note, "at": iso(note.get("at")), "next_attempt_at": iso(note.get("next_attempt_at"))}


def show(delivery_id: str, client: redis.Redis | None = None) -> dict[str, Any]:
    record = deliveries.get(delivery_id, client)
    if record is None:
        raise NotFound(f"no delivery {delivery_id!r} (unknown, or older than the retention)")
    out = present(record, with_body=True)
    out["attempt_log"] = [present_attempt(a) for a in deliveries.attempts(delivery_id, client)]
    return out


def listing(partner: str | None = None, status: str | None = None, limit: int = 50,
            client: redis.Redis | None = None) -> list[dict[str, Any]]:
    return [present(r) for r in deliveries.newest(partner, status, limit, client=client)]


def prune(ctx: Context, client: redis.Redis | None = None) -> int:
    return deliveries.prune(time.time() - ctx.retention_seconds, registry.names(client), client)
