"""The fast paths send exactly what the plain ones would (issue 12, "Performance").

Email: whether an edition goes over one SMTP connection or several at once,
each subscriber receives, byte for byte, the copy ``EditionMessage.copy_for``
builds for that subscriber, once; including display names that need encoded
words and addresses full of the characters an addr-spec allows.

Webhooks: the transport prepares its request itself and hands it to
``Session.send``; the partner must receive the very request ``Session.post``
would have sent (request line, every header in order, body), a header with a
line break must still be refused before anything is sent, and every partner of
an event still gets the body built for its own ``fullArticle`` setting.
"""

from __future__ import annotations

import json
import uuid

import pytest

from conftest import unique_article
from newsletter_fixtures import make_list, publish as stage_story, smtp_sink, subscribe_all
from test_webhooks_delivery import LOOPBACK, ctx, partners, publish, section  # noqa: F401  (partners: fixture)
from webhooks_fixtures import sinks  # noqa: F401  (fixture)

from syndicate import events
from syndicate.config import get_settings, reset_settings
from syndicate.newsletter import editions, message, service as newsletter, tokens
from syndicate.newsletter.listconfig import normalize_email
from syndicate.newsletter.message import EditionMessage
from syndicate.store import get_redis, key
from syndicate.webhooks import deliveries, payload, service as webhooks, transport


# --- email -----------------------------------------------------------------------

def _readers() -> list[str]:
    run = uuid.uuid4().hex[:6]
    odd = [f"o'brien+news.{run}@mail.example", f"a.b-c_d.{run}@sub.mail.example", f"x=y?z.{run}@mail.example",
           f"{{curly}}|pipe~.{run}@mail.example", f"UPPER.Case.{run}@Mail.Example", f"#hash&amp.{run}@mail.example"]
    # As the list stores them (the domain lower-cased): the sink is keyed by the envelope address.
    return [normalize_email(a) for a in odd + [f"plain{i}.{run}@mail.example" for i in range(14)]]


@pytest.mark.parametrize("connections", [1, 3])
def test_every_copy_is_byte_for_byte_what_the_builder_makes_for_that_recipient(monkeypatch, redis_client,
                                                                               connections):
    sink = smtp_sink()
    monkeypatch.setenv("SYNDICATE_SMTP_CONNECTIONS", str(connections))
    monkeypatch.setenv("SYNDICATE_SMTP_BATCH_SIZE", "4")  # five batches: several in flight at once
    reset_settings()
    # The MIME boundary is random per edition; fixed here so the expected copies can be rebuilt.
    monkeypatch.setattr(message.secrets, "token_hex", lambda n=12: "b0undary" * 3)
    try:
        config = make_list(name="Édition du matin «Nëws» =?utf-8?q?x?=",
                           fromAddress="Nëwslooks «Desk» <news@newslooks.example>",
                           replyTo="\"Dësk, the\" <desk@newslooks.example>")
        stage_story(unique_article(section=config["sections"][0], headline="Ünïcode — and =?utf-8?b?QmNj?= too"))
        readers = _readers()
        subscribe_all(config["id"], readers)
        eid = newsletter.open_manual(config["id"])
        result = newsletter.run_edition(eid)
        assert result["counts"]["sent"] == len(readers), result

        settings = get_settings()
        content = json.loads(editions.get_edition(eid)["content"])
        builder = EditionMessage(content["list"], eid, content["subject"], content["html"], content["text"],
                                 settings.newsletter_from, date=content["issued_at"])
        sids = get_redis().hmget(key("nl", "sid-of", config["id"]), readers)
        for address, sid in zip(readers, sids):
            token = tokens.sign(settings.secret_key, tokens.UNSUBSCRIBE, config["id"], sid)
            expected = builder.copy_for(address, sid, f"{settings.public_url}/unsubscribe/{token}", token)
            assert sink.raw(address) == [expected.data], f"{address} got other bytes than its own copy"
    finally:
        monkeypatch.delenv("SYNDICATE_SMTP_CONNECTIONS")
        monkeypatch.delenv("SYNDICATE_SMTP_BATCH_SIZE")
        reset_settings()


# --- webhooks --------------------------------------------------------------------

def _wire(received) -> tuple[str, list[tuple[str, str]], bytes]:
    return received.path, list(received.headers.items()), received.body


@pytest.mark.parametrize("path", ["/hooks/in", "/hooks/in?x=1&y=%20z&ü=é", "/ümlaut path/"])
def test_the_transport_sends_the_request_session_post_would(sinks, path):  # noqa: F811
    sink = sinks()
    url = sink.url + path
    body = json.dumps({"type": "article.updated", "headline": "Ünïcode"}, ensure_ascii=False).encode()
    headers = transport.request_headers({"X-Partner-Key": "k1", "Accept": "application/json"},
                                        {"webhook-id": "msg_x", "webhook-timestamp": "1700000000",
                                         "webhook-signature": "v1,abc"})
    outcome = transport.post(url, body, headers, LOOPBACK, 5, 5)
    assert outcome.ok, outcome
    plain = transport.session_for(LOOPBACK).post(url, data=body, headers=headers, timeout=5, allow_redirects=False)
    assert plain.status_code == 200
    ours, theirs = sink.requests()
    assert _wire(ours) == _wire(theirs)


def test_a_header_with_a_line_break_is_refused_before_anything_is_sent(sinks):  # noqa: F811
    sink = sinks()
    outcome = transport.post(sink.url, b"{}", {"X-Bad": "a\r\nInjected: yes"}, LOOPBACK, 5, 5)
    assert outcome.status is None and outcome.error and "request failed" in outcome.error
    assert sink.count() == 0


def test_each_partner_gets_the_body_built_for_its_own_full_article_setting(partners):  # noqa: F811
    sec = section()
    names = [partners("http://127.0.0.1:9/", sections=[sec], fullArticle=full)[0] for full in (True, False, True, False)]
    event_id = publish(sec)
    webhooks.dispatch(event_id, ctx(schedule=(60.0,)))  # created, none attempted
    event = events.get_event(event_id)
    records = {r["partner"]: r for r in deliveries.get_many(deliveries.ids_of_event(event_id))}
    assert set(records) == set(names)
    public_url = get_settings().public_url
    for name, full in zip(names, (True, False, True, False)):
        assert records[name]["body"] == payload.encode(payload.event_body(event, public_url, full)).decode()
    assert "article" in json.loads(records[names[0]]["body"])["data"]
    assert "article" not in json.loads(records[names[1]]["body"])["data"]
