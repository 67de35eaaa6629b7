"""Newsletter operations: load state, call the pure code, persist, send.

Tasks, the CLI and the API all come through here, so `syndicate digest send
--now` and a beat-fired edition run exactly the same code.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import smtplib
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from .. import deadletters
from ..config import get_settings
from ..errors import ConfigError, Conflict, DeliveryError, NotFound
from ..store import get_redis, key
from . import contents, cron, editions, lists, render, tokens
from .edition import UNSUBSCRIBE_PLACEHOLDER, Edition
from .headers import one_line
from .message import simple_message
from .sender import AuthenticationFailed, LeaseLost, Sender, SmtpUnavailable
from .smtpurl import parse_smtp_url
from .transport import Outcome, SmtpConnection

__all__ = ["AuthenticationFailed", "LeaseLost", "SmtpUnavailable", "run_edition", "resume", "open_due", "open_manual", "preview", "stalled", "summary"]

log = logging.getLogger("syndicate.newsletter")


# --- choosing stories --------------------------------------------------------

def next_edition(list_id: str, client: redis.Redis | None = None) -> Edition:
    """What the next edition would carry now, without rotating anything (preview)."""
    r = client or get_redis()
    config = lists.get_list(list_id, r)
    state = lists.list_state(list_id, r)
    now = time.time()
    stories = contents.stories(config, editions.staged(list_id, r), state.get("last_edition_at", ""), now, r)
    return Edition("preview", config, stories, dt.datetime.fromtimestamp(now, dt.timezone.utc), get_settings().site_url)


def preview(list_id: str, fmt: str = "html") -> tuple[str, int]:
    """(document, story count); the unsubscribe link points nowhere."""
    edition, rendered = contents.render_isolated(next_edition(list_id), lambda article_id, exc: None)
    if rendered is None:
        return "", 0
    body = rendered.html if fmt == "html" else rendered.text
    return body.replace(UNSUBSCRIBE_PLACEHOLDER, "#unsubscribe-preview"), len(edition.stories)


# --- opening editions --------------------------------------------------------

def scheduled_edition_id(list_id: str, slot: dt.datetime) -> str:
    return f"{list_id}.{slot.astimezone(dt.timezone.utc):%Y%m%dT%H%MZ}"


def open_manual(list_id: str) -> str:
    lists.get_list(list_id)
    eid = f"{list_id}.m{int(time.time() * 1000)}"
    editions.open_edition(eid, list_id, dt.datetime.now(dt.timezone.utc).isoformat(), "manual", time.time())
    return eid


# Slots missed while beat was down are opened when it comes back, up to this many per list; the
# stories of older ones are not lost (they wait in the pending hash and go out in the first one opened).
MAX_CATCH_UP = 24


def due_slots(config: dict[str, Any], state: dict[str, str], now: dt.datetime) -> list[dt.datetime]:
    """The list's cron slots that came by ``now`` and have no edition yet, oldest first.

    Before its first scheduled edition a list has nothing to catch up: only its
    latest slot is due (every staged story goes into it).
    """
    created = float(state.get("created_at") or 0)
    last = float(state.get("last_slot") or 0)
    limit = MAX_CATCH_UP if last else 1
    slots: list[dt.datetime] = []
    slot = cron.previous_fire(config["schedule"], config["timezone"], now)
    while slot is not None and slot.timestamp() > last and slot.timestamp() >= created and len(slots) < limit:
        slots.append(slot)
        slot = cron.previous_fire(config["schedule"], config["timezone"], slot - dt.timedelta(seconds=1))
    return slots[::-1]


def open_due(now: dt.datetime | None = None) -> list[str]:
    """Open an edition for every cron slot of every list that came and has none yet; return their ids.

    Keyed by slot, so a beat that fires twice (or two beats) opens one edition;
    a slot that passed while beat was down is opened when it comes back (a new
    list waits for its first slot after creation). Opening in slot order rotates
    the staged stories into the first one; the later ones are recorded skipped.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    opened = []
    r = get_redis()
    for config in lists.all_lists(r):
        for slot in due_slots(config, lists.list_state(config["id"], r), now):
            eid = scheduled_edition_id(config["id"], slot)
            if editions.open_edition(eid, config["id"], slot.isoformat(), "scheduled", slot.timestamp(), r) == 1:
                opened.append(eid)
    return opened


def prune_unconfirmed(now: float | None = None) -> int:
    """Drop subscription requests whose confirmation link has expired (beat runs this)."""
    cutoff = (now or time.time()) - get_settings().newsletter_confirm_hours * 3600
    return sum(lists.prune_unconfirmed(config["id"], cutoff) for config in lists.all_lists())


def stalled() -> list[str]:
    """Unfinished editions nobody holds the lease of (their sender died): to be resumed."""
    r = get_redis()
    out = []
    for eid in editions.active_editions(r):
        if editions.lease_holder(eid, r) is None and r.set(key("nl", "kick", eid), 1, nx=True, ex=15):
            out.append(eid)
    return out


# --- building and sending ----------------------------------------------------

def _build(eid: str, record: dict[str, str], r: redis.Redis) -> bool:
    """Build the edition's content and snapshot its recipients; False when it was skipped."""
    list_id = record["list"]
    try:
        config = lists.get_list(list_id, r)
    except NotFound:
        editions.finish_build(eid, list_id, None, [], "the list was deleted", r)
        editions.retain(eid, get_settings().newsletter_retention_days, r)
        return False
    now = time.time()
    staged = editions.edition_story_ids(eid, r)

    def dead_letter(article_id: str, exc: Exception) -> None:
        # Re-staging the story for this list's next edition redoes the work once the record is fixed.
        deadletters.record("newsletter", f"{type(exc).__name__}: {exc}", task="syndicate.newsletter.stage_article",
                           args=[list_id, article_id], article_id=article_id, subject=eid, client=r)

    stories = contents.stories(config, staged, record.get("window_start", ""), now, r, dead_letter)
    edition = Edition(eid, config, stories, dt.datetime.fromtimestamp(now, dt.timezone.utc), get_settings().site_url)
    edition, rendered = contents.render_isolated(edition, dead_letter)
    stories = edition.stories
    if not stories:
        editions.finish_build(eid, list_id, None, [], "no new stories since the previous edition", r)
        editions.retain(eid, get_settings().newsletter_retention_days, r)
        log.info("edition %s skipped: no stories", eid)
        return False
    content = {"list": config, "subject": rendered.subject, "html": rendered.html, "text": rendered.text,
               "stories": [s["id"] for s in stories], "full": rendered.full_stories,
               "linked_only": rendered.linked_only, "issued_at": now}
    editions.finish_build(eid, list_id, content, content["stories"], client=r)
    return True


def run_edition(eid: str, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Build (if not yet built) and send an edition; safe to call any number of times, concurrently too."""
    r = get_redis()
    record = editions.get_edition(eid, r)
    if not record:
        raise NotFound(f"no edition {eid!r}")
    if record["state"] in editions.ENDED:
        return summary(eid)
    owner = uuid.uuid4().hex
    if not editions.acquire_lease(eid, owner, get_settings().newsletter_lease_seconds, r):
        return {**summary(eid), "note": "another sender holds this edition"}
    try:
        if record["state"] == "open" and not _build(eid, record, r):
            return summary(eid)
        record = editions.get_edition(eid, r)
        try:
            Sender(eid, record["list"], json.loads(record["content"]), owner, progress, r).run()
        except SmtpUnavailable as exc:
            # Not the recipients' fault: none of them is charged an attempt. The edition stays
            # "sending" with no lease, so beat's tick resumes it (every 20 s) until the server is back.
            log.warning("edition %s paused: %s", eid, exc)
            return {**summary(eid), "note": f"paused: {exc}; beat resumes it"}
        except AuthenticationFailed as exc:
            # Not retried: beat would only repeat the refusal. Recorded on the edition for the operator.
            log.error("edition %s stopped: %s", eid, exc)
            editions.fail(eid, str(exc), get_settings().newsletter_retention_days, r)
            return summary(eid)
        editions.finish(eid, get_settings().newsletter_retention_days, r)
        return summary(eid)
    finally:
        editions.release_lease(eid, owner, r)


def reopen_failed(eid: str, list_id: str | None = None) -> None:
    """Put a failed edition back to sending (the operator fixed its cause); NotFound, or Conflict if not failed."""
    record = editions.get_edition(eid)
    if not record or (list_id is not None and record.get("list") != list_id):
        raise NotFound(f"no edition {eid!r}" + (f" on list {list_id!r}" if list_id else ""))
    if not editions.resume(eid):
        raise Conflict(f"edition {eid} has not failed (state {editions.get_edition(eid).get('state')}); nothing to resume")


def resume(eid: str, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Go on with a failed edition once its cause is fixed: recipients already sent are not sent again."""
    reopen_failed(eid)
    return run_edition(eid, progress)


def summary(eid: str) -> dict[str, Any]:
    record = editions.get_edition(eid)
    if not record:
        raise NotFound(f"no edition {eid!r}")
    out: dict[str, Any] = {k: v for k, v in record.items() if k != "content"}
    if record.get("content"):
        content = json.loads(record["content"])
        out.update(subject=content["subject"], stories=len(content["stories"]), linked_only=content["linked_only"])
    out["counts"] = editions.tally(eid) if record["state"] != "skipped" else {}
    return out


# --- double opt-in -----------------------------------------------------------

def request_subscription(list_id: str, email: str) -> str | None:
    """Record a pending subscriber; the subscriber id to confirm, or None (already in, or asked too recently)."""
    record = lists.request_subscription(list_id, email)
    if not record:
        return None
    # One confirmation email per address per 10 minutes: the endpoint is public.
    if not get_redis().set(key("nl", "confirm-sent", list_id, record["sid"]), 1, nx=True, ex=600):
        return None
    return record["sid"]


def confirmation_token(list_id: str, subscriber_id: str, issued_at: float | None = None) -> str:
    """The signed link token; it expires SYNDICATE_NEWSLETTER_CONFIRM_HOURS (hours, default 48) after issue."""
    settings = get_settings()
    issued = time.time() if issued_at is None else issued_at
    expires = int(issued + settings.newsletter_confirm_hours * 3600)
    return tokens.sign(settings.secret_key, tokens.CONFIRM, list_id, subscriber_id, expires)


def send_confirmation(list_id: str, subscriber_id: str) -> Outcome | None:
    settings = get_settings()
    config = lists.get_list(list_id)
    address = lists.address_of(list_id, subscriber_id)
    if address is None:
        return None
    token = confirmation_token(list_id, subscriber_id)
    context = {"list_name": one_line(config["name"]), "url": f"{settings.public_url}/newsletters/confirm/{token}",
               "hours": int(settings.newsletter_confirm_hours), "description": one_line(config.get("description"))}
    text = render.render_page("confirm_email.txt", **context)
    html = render.render_page("confirm_email.html", **context)
    sender, data = simple_message(config.get("fromAddress") or settings.newsletter_from, address,
                                  f"Confirm your subscription to {context['list_name']}", text, html)
    smtp = parse_smtp_url(settings.smtp_url)
    try:
        with SmtpConnection(smtp) as conn:
            outcome = conn.send(sender, address, data)
    except smtplib.SMTPAuthenticationError as exc:
        # Not an OSError to retry (smtplib's errors are OSErrors): the operator has to fix the URL.
        raise ConfigError(f"the SMTP server {smtp.redacted()} refused the credentials ({exc.smtp_code}): "
                          "fix the user and password in SYNDICATE_SMTP_URL") from None
    if outcome.status == "transient":
        raise DeliveryError(f"confirmation to {address} failed for now: {outcome.detail}")
    return outcome
