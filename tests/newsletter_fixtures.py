"""Newsletter test helpers: a real SMTP server (aiosmtpd) on loopback and list factories.

The sink counts messages per recipient, keeps the raw bytes, and can refuse
chosen recipients (550), fail them transiently a number of times (451), or
slow down: ``rcpt_delay`` before accepting a recipient, ``data_delay`` after it
has stored a message and before it answers (a real MTA's commit-then-reply).

One sink serves the whole run (SYNDICATE_SMTP_URL points at it, set here at
import, before settings are read); tests use unique addresses, so each reads
only its own mail.
"""

from __future__ import annotations

import asyncio
import collections
import email
import email.policy
import os
import threading
import uuid

from conftest import free_port, unique_article

SMTP_PORT = int(os.environ.get("SYNDICATE_TEST_SMTP_PORT") or free_port())
os.environ["SYNDICATE_TEST_SMTP_PORT"] = str(SMTP_PORT)
os.environ["SYNDICATE_SMTP_URL"] = f"smtp://127.0.0.1:{SMTP_PORT}"
os.environ.setdefault("SYNDICATE_SMTP_RETRY_DELAYS", "0.1,0.2")
os.environ.setdefault("SYNDICATE_NEWSLETTER_FROM", "Test Desk <desk@news.example>")

from syndicate.config import reset_settings  # noqa: E402

reset_settings()


class SinkHandler:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[tuple[str, bytes]] = []
        self.counts: collections.Counter[str] = collections.Counter()
        self.refuse: set[str] = set()
        self.transient: dict[str, int] = {}
        self.rcpt_delay = 0.0
        self.data_delay = 0.0
        # Recipients whose message is stored, then the connection dropped before the reply to
        # the final "." is written: the one moment a client cannot know whether it was delivered.
        self.drop_after_data: set[str] = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            if address in self.refuse:
                return "550 5.1.1 no such mailbox"
            if self.transient.get(address, 0) > 0:
                self.transient[address] -= 1
                return "451 4.3.0 try again later"
        if self.rcpt_delay:
            await asyncio.sleep(self.rcpt_delay)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.messages.append((rcpt, envelope.original_content))
                self.counts[rcpt] += 1
            drop = any(rcpt in self.drop_after_data for rcpt in envelope.rcpt_tos)
        if drop:
            server.transport.abort()  # no reply: the client sees the connection closed mid-wait
            return "421 4.3.0 closing"  # written to a closed transport: never reaches the client
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        return "250 2.0.0 queued"

    def count(self, address: str) -> int:
        with self.lock:
            return self.counts[address]

    def total(self, addresses) -> int:
        with self.lock:
            return sum(self.counts[a] for a in addresses)

    def received(self, address: str) -> list[email.message.EmailMessage]:
        with self.lock:
            raw = [data for rcpt, data in self.messages if rcpt == address]
        return [email.message_from_bytes(data, policy=email.policy.default) for data in raw]

    def raw(self, address: str) -> list[bytes]:
        with self.lock:
            return [data for rcpt, data in self.messages if rcpt == address]


_SINK = None


def smtp_sink() -> SinkHandler:
    """Start the run's SMTP sink once; return its handler."""
    global _SINK
    if _SINK is None:
        from aiosmtpd.controller import Controller

        handler = SinkHandler()
        controller = Controller(handler, hostname="127.0.0.1", port=SMTP_PORT, data_size_limit=10 * 1024 * 1024)
        controller.start()
        _SINK = (controller, handler)
    return _SINK[1]


def unique_list_id(prefix: str = "nl") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def addresses(n: int, tag: str = "r") -> list[str]:
    run = uuid.uuid4().hex[:8]
    return [f"{tag}{i}.{run}@mail.example" for i in range(n)]


def unique_section() -> str:
    return f"Sec{uuid.uuid4().hex[:8]}"


def make_list(list_id: str | None = None, **changes) -> dict:
    """A list filtered to its own fresh section (``config["sections"][0]``), so tests never share stories."""
    from syndicate.newsletter import lists

    doc = {
        "sections": [unique_section()],
        "id": list_id or unique_list_id(),
        "name": "Morning Edition",
        "schedule": "0 7 * * *",
        "timezone": "America/New_York",
        "fromAddress": "Newslooks <news@newslooks.example>",
    }
    doc.update(changes)
    config, _ = lists.put_list(doc)
    return config


def subscribe_all(list_id: str, emails) -> None:
    from syndicate.newsletter import lists

    for address in emails:
        lists.add_subscriber(list_id, address)


def publish(article: dict) -> str:
    """Store an article and stage its event the way the worker would (no broker needed)."""
    from syndicate import events
    from syndicate.newsletter import editions, lists
    from syndicate.newsletter.listconfig import wants_section

    result = events.ingest(article)
    event = events.get_event(result.event_id)
    for config in lists.all_lists():
        if wants_section(config, event["section"]):
            editions.stage(config["id"], event["article_id"], event["id"])
    return result.event_id


def built_edition(readers: list[str]) -> tuple[dict, str]:
    """A new list with one staged story and ``readers`` subscribed, and a manual edition of it built
    (recipients snapshotted, copies ready), not yet sent: (list config, edition id)."""
    from syndicate.newsletter import editions, lists, service

    config = make_list()
    publish(unique_article(section=config["sections"][0]))
    subscribe_all(config["id"], readers)
    eid = service.open_manual(config["id"])
    assert service._build(eid, editions.get_edition(eid), lists.get_redis())
    return config, eid
