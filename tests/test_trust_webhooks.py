"""Trust guarantees of the partner webhooks channel, through real Celery workers and real sinks.

* Stories published while a partner is disabled are recorded for it as
  ``skipped`` (reason "partner disabled") and sent, once each and with the
  webhook-id they would have carried, by ``partners recover`` after it is
  enabled again; ``recover`` on a still-disabled partner refuses (CLI exit 1,
  API 409 with the JSON error body).
* An event whose webhook body cannot be built is dead-lettered for the
  webhooks channel while the other events' deliveries go on.
"""

from __future__ import annotations

import json
import uuid

import pytest
from click.testing import CliRunner

from conftest import ADMIN_AUTH, INGEST_AUTH, unique_article, wait_for
from syndicate import deadletters, events
from syndicate.cli.main import cli
from syndicate.store import key
from syndicate.webhooks import deliveries, service
from webhooks_fixtures import Sink, partner, verify  # noqa: F401  (partner is a fixture)
from syndicate.workers.base import TRANSIENT_ERRORS, receipts
from syndicate.workers.ingest import enqueue_fanout
from syndicate.workers.webhooks import deliver, dispatch_event


@pytest.fixture()
def sink():
    made = Sink()
    yield made
    made.close()


def _run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _publish(http, api_server, section: str) -> tuple[str, str]:
    article = unique_article(section=section)
    posted = http.post(f"{api_server}/v1/articles", data=json.dumps(article),
                       headers={**INGEST_AUTH, "Content-Type": "application/json"})
    assert posted.status_code == 202, posted.text
    return posted.json()["event_id"], article["id"]


def _statuses(name: str) -> dict[str, str]:
    return {d["id"]: d["status"] for d in service.listing(partner=name, limit=1000)}


def test_stories_published_while_disabled_are_skipped_then_recovered_once(api_server, http, sink, partner,
                                                                          celery_worker):
    section = f"Trust {uuid.uuid4().hex[:6]}"
    name, secret = partner(sink.url, sections=[section])
    assert _run("partners", "disable", name, "--reason", "maintenance").exit_code == 0
    published = [_publish(http, api_server, section) for _ in range(3)]
    expected = {deliveries.delivery_id(event_id, name): article_id for event_id, article_id in published}

    wait_for(lambda: _statuses(name) == {d: "skipped" for d in expected}, message="three skipped deliveries")
    listed = _run("deliveries", "list", "--partner", name)
    for delivery_id in expected:
        [line] = [row for row in listed.output.splitlines() if row.startswith(delivery_id)]
        assert " skipped " in line and "partner disabled (maintenance)" in line
    assert {d["failure_reason"] for d in service.listing(partner=name, status="skipped")} == {"partner disabled"}
    assert sink.count() == 0

    # Still disabled: recover refuses in one line, exit 1, and the API answers 409 with the JSON error body.
    refused = _run("partners", "recover", name, "--since", "1h")
    assert refused.exit_code == 1
    assert len(refused.output.strip().splitlines()) == 1 and "disabled" in refused.output
    answered = http.post(f"{api_server}/v1/partners/{name}/recover", data=json.dumps({"since": "2000-01-01T00:00:00Z"}),
                         headers={**ADMIN_AUTH, "Content-Type": "application/json"})
    assert answered.status_code == 409
    assert answered.json()["error"] == "conflict" and "disabled" in answered.json()["message"]
    assert _statuses(name) == {d: "skipped" for d in expected} and sink.count() == 0

    assert _run("partners", "enable", name).exit_code == 0
    recovered = _run("partners", "recover", name, "--since", "1h")
    assert recovered.exit_code == 0, recovered.output
    assert set(expected) <= set(recovered.output.split())
    wait_for(lambda: _statuses(name) == {d: "succeeded" for d in expected}, message="recovered deliveries")
    requests = sink.requests()
    assert sorted(r.headers["webhook-id"] for r in requests) == sorted(expected)  # once each, same ids
    for request in requests:
        assert verify(secret, request)["data"]["id"] == expected[request.headers["webhook-id"]]
    # A second recover finds nothing left to send.
    again = _run("partners", "recover", name, "--since", "1h")
    assert again.exit_code == 0 and "re-sending 0" in again.output


def test_a_story_whose_body_cannot_be_built_is_dead_lettered_and_the_others_go_on(sink, partner, redis_client,
                                                                                 celery_worker):
    section = f"Iso {uuid.uuid4().hex[:6]}"
    name, _secret = partner(sink.url, sections=[section])
    good_before = events.ingest(unique_article(section=section)).event_id
    broken_article = events.ingest(unique_article(section=section))
    unreadable = events.ingest(unique_article(section=section)).event_id
    good_after = events.ingest(unique_article(section=section)).event_id
    # Corrupt two logged events in place, as a bad write or a hand edit could leave them.
    stored = json.loads(redis_client.get(key("event", broken_article.event_id)))
    stored["article"] = {"id": broken_article.article_id}  # no headline, url, summary...
    redis_client.set(key("event", broken_article.event_id), json.dumps(stored))
    redis_client.set(key("event", unreadable), b"{\xff not json")
    enqueue_fanout(good_before)
    enqueue_fanout(broken_article.event_id)
    # Straight to this channel's task: the fan-out (the ingest queue) cannot read this record either.
    dispatch_event.delay(unreadable)
    enqueue_fanout(good_after)

    good = {deliveries.delivery_id(e, name) for e in (good_before, good_after)}
    wait_for(lambda: _statuses(name) == {d: "succeeded" for d in good}, message="the good stories delivered")
    assert sorted(r.headers["webhook-id"] for r in sink.requests()) == sorted(good)

    def letters():
        found = {d["subject"]: d for d in deadletters.listing(1000)
                 if d["channel"] == "webhooks" and d["subject"] in (broken_article.event_id, unreadable)}
        return found if len(found) == 2 else None

    found = wait_for(letters, message="both broken events dead-lettered")
    broken = found[broken_article.event_id]
    assert broken["article_id"] == broken_article.article_id and "KeyError" in broken["error"]
    assert broken["task"] == dispatch_event.name and broken["args"] == [broken_article.event_id]
    assert "not readable JSON" in found[unreadable]["error"] and found[unreadable]["args"] == [unreadable]
    # Handled, not retried forever: the channel's receipt says so, and nothing was created for them.
    handled = {r["subject"] for r in receipts("webhooks", 1000)}
    assert {broken_article.event_id, unreadable} <= handled
    assert deliveries.ids_of_event(broken_article.event_id) == deliveries.ids_of_event(unreadable) == []


def test_webhooks_tasks_retry_redis_errors_as_transient():
    # redis-py's ConnectionError is not an OSError: retrying on OSError alone would drop the work.
    for task in (dispatch_event, deliver):
        assert set(TRANSIENT_ERRORS) <= set(task.autoretry_for)
