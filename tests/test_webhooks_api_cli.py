"""The partner admin API and the partners/deliveries CLI, against the real API server and real sinks."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from click.testing import CliRunner

from conftest import ADMIN_AUTH, INGEST_AUTH, unique_article, wait_for
from syndicate import events
from syndicate.cli.main import cli
from syndicate.webhooks import deliveries, registry, service
from webhooks_fixtures import Answer, Sink, verify

JSON = {"Content-Type": "application/json"}


@pytest.fixture()
def sink():
    made = Sink()
    yield made
    made.close()


def _name() -> str:
    return f"api-{uuid.uuid4().hex[:8]}"


def _post(http, url, body, headers=ADMIN_AUTH):
    return http.post(url, data=json.dumps(body), headers={**headers, **JSON})


def test_admin_token_is_required_and_distinct_from_ingest(api_server, http):
    assert http.get(f"{api_server}/v1/partners").status_code == 401
    assert http.get(f"{api_server}/v1/partners", headers=INGEST_AUTH).status_code == 401
    assert http.get(f"{api_server}/v1/partners", headers=ADMIN_AUTH).status_code == 200


@pytest.mark.both_brokers
def test_partner_lifecycle_over_the_api(api_server, http, sink, celery_worker):
    name = _name()
    section = f"Api {uuid.uuid4().hex[:6]}"
    created = _post(http, f"{api_server}/v1/partners", {"name": name, "url": sink.url, "sections": [section]})
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    assert secret.startswith("whsec_") and "secret" not in json.dumps(created.json()["partner"]).replace('"secrets"', "")
    assert _post(http, f"{api_server}/v1/partners", {"name": name, "url": sink.url}).status_code == 409
    listed = http.get(f"{api_server}/v1/partners", headers=ADMIN_AUTH).json()["partners"]
    assert name in [p["name"] for p in listed] and secret not in json.dumps(listed)

    # ping: a signed test event, answered with the attempt
    pinged = http.post(f"{api_server}/v1/partners/{name}/ping", headers=ADMIN_AUTH).json()
    assert pinged["status"] == "succeeded" and pinged["attempt_log"][0]["status_code"] == 200
    assert verify(secret, sink.requests()[-1])["type"] == "webhook.test"

    # rotate: the answer holds the new secret; both verify during the grace period
    rotated = http.post(f"{api_server}/v1/partners/{name}/rotate-secret", headers=ADMIN_AUTH).json()
    new_secret = rotated["secret"]
    assert rotated["grace_hours"] == 24 and len(rotated["partner"]["secrets"]) == 2
    http.post(f"{api_server}/v1/partners/{name}/ping", headers=ADMIN_AUTH)
    verify(secret, sink.requests()[-1])
    verify(new_secret, sink.requests()[-1])

    # disable / enable
    disabled = http.post(f"{api_server}/v1/partners/{name}/disable", params={"reason": "maintenance"}, headers=ADMIN_AUTH).json()
    assert disabled["enabled"] is False and disabled["disabledReason"] == "maintenance"
    assert http.post(f"{api_server}/v1/partners/{name}/enable", headers=ADMIN_AUTH).json()["enabled"] is True

    # a real event, then the delivery log, resend and recover
    article = unique_article(section=section)
    posted = _post(http, f"{api_server}/v1/articles", article, INGEST_AUTH)
    event_id = posted.json()["event_id"]
    wait_for(lambda: deliveries.ids_of_event(event_id), message="the delivery")
    [delivery_id] = deliveries.ids_of_event(event_id)
    wait_for(lambda: deliveries.get(delivery_id)["status"] == "succeeded", message="delivery success")
    listed = http.get(f"{api_server}/v1/deliveries", params={"partner": name}, headers=ADMIN_AUTH).json()["deliveries"]
    assert delivery_id in [d["id"] for d in listed]
    shown = http.get(f"{api_server}/v1/deliveries/{delivery_id}", headers=ADMIN_AUTH).json()
    assert shown["attempt_log"][0]["status_code"] == 200 and json.loads(shown["body"])["data"]["id"] == article["id"]
    before = sink.count()
    resent = http.post(f"{api_server}/v1/deliveries/{delivery_id}/resend", headers=ADMIN_AUTH)
    assert resent.status_code == 202
    wait_for(lambda: sink.count() == before + 1, message="the resent delivery")
    assert sink.requests()[-1].headers["webhook-id"] == delivery_id
    recovered = _post(http, f"{api_server}/v1/partners/{name}/recover", {"since": "2000-01-01T00:00:00Z"})
    assert recovered.status_code == 202 and recovered.json()["resent"] == []
    bad = _post(http, f"{api_server}/v1/partners/{name}/recover", {"since": "yesterday-ish"})
    assert bad.status_code == 422 and bad.json()["problems"][0]["path"] == "$.since"

    assert http.delete(f"{api_server}/v1/partners/{name}", headers=ADMIN_AUTH).status_code == 204
    assert http.get(f"{api_server}/v1/partners/{name}", headers=ADMIN_AUTH).status_code == 404


def test_invalid_partner_lists_every_problem(api_server, http):
    response = _post(http, f"{api_server}/v1/partners",
                     {"name": "Bad Name!", "url": "ftp://x", "eventTypes": ["nope"], "colour": "red"})
    assert response.status_code == 422
    paths = {p["path"] for p in response.json()["problems"]}
    assert {"$.name", "$.url", "$.eventTypes[0]", "$.colour"} <= paths
    reserved = _post(http, f"{api_server}/v1/partners",
                     {"name": _name(), "url": "https://p.example/", "headers": {"webhook-id": "x"}})
    assert reserved.status_code == 422
    assert http.post(f"{api_server}/v1/partners", data="{", headers={**ADMIN_AUTH, **JSON}).status_code == 400
    assert http.post(f"{api_server}/v1/partners", data="x", headers={**ADMIN_AUTH, "Content-Type": "text/plain"}).status_code == 415


NEWLINES = [({"name": "nl\n"}, "$.name"), ({"headers": {"X-Key": "v\n"}}, '$.headers["X-Key"]'),
            ({"headers": {"X-Key": "v\r\nX-Evil: 1"}}, '$.headers["X-Key"]'), ({"sections": ["S\n"]}, "$.sections[0]"),
            ({"headers": {"Webhook-Signature": "v1,forged"}}, '$.headers["Webhook-Signature"]')]


@pytest.mark.parametrize("change, path", NEWLINES)
def test_api_refuses_newlines_and_reserved_headers_at_their_path(api_server, http, change, path):
    name = _name()
    response = _post(http, f"{api_server}/v1/partners", {"name": name, "url": "https://p.example/h", **change})
    assert response.status_code == 422, response.text
    assert [p["path"] for p in response.json()["problems"]] == [path]
    assert registry.find(change.get("name", name)) is None


@pytest.mark.parametrize("change, path", NEWLINES)
def test_cli_refuses_newlines_and_reserved_headers_at_their_path(tmp_path, change, path):
    name = _name()
    config = tmp_path / "partner.json"
    config.write_text(json.dumps({"name": name, "url": "https://p.example/h", **change}))
    result = _run("partners", "add", "--file", str(config))
    assert result.exit_code == 2, result.output
    assert path in result.output
    assert registry.find(change.get("name", name)) is None


def test_put_refuses_a_header_value_with_a_newline(api_server, http, sink):
    name = _name()
    _post(http, f"{api_server}/v1/partners", {"name": name, "url": sink.url})
    response = http.put(f"{api_server}/v1/partners/{name}", headers={**ADMIN_AUTH, **JSON},
                        data=json.dumps({"name": name, "url": sink.url, "headers": {"X-Key": "v\n"}}))
    assert response.status_code == 422 and response.json()["problems"][0]["path"] == '$.headers["X-Key"]'
    assert registry.get(name)["headers"] == {}
    registry.remove(name)


def test_put_replaces_configuration_and_keeps_the_secret(api_server, http, sink):
    name = _name()
    secret = _post(http, f"{api_server}/v1/partners", {"name": name, "url": sink.url}).json()["secret"]
    response = http.put(f"{api_server}/v1/partners/{name}", headers={**ADMIN_AUTH, **JSON},
                        data=json.dumps({"name": name, "url": sink.url, "fullArticle": True, "sections": ["X"]}))
    assert response.status_code == 200 and response.json()["fullArticle"] is True
    http.post(f"{api_server}/v1/partners/{name}/ping", headers=ADMIN_AUTH)
    verify(secret, sink.requests()[-1])
    registry.remove(name)


def test_openapi_documents_partner_and_event_schemas(api_server, http):
    doc = http.get(f"{api_server}/openapi.json").json()
    assert {"Partner", "Event", "Event_articleData"} <= set(doc["components"]["schemas"])
    body = doc["paths"]["/v1/partners"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/Partner"}


def _run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_cli_partners_and_deliveries(sink, redis_client):
    name = _name()
    section = f"Cli {uuid.uuid4().hex[:6]}"
    added = _run("partners", "add", name, sink.url, "--section", section, "--header", "X-Key: 42", "--full-article")
    assert added.exit_code == 0, added.output
    secret = [line.split(": ")[1] for line in added.output.splitlines() if line.startswith("secret: ")][0]
    assert _run("partners", "add", name, sink.url).exit_code == 1  # exists
    bad = _run("partners", "add", "x", "ftp://nope")
    assert bad.exit_code == 2 and "$.url" in bad.output

    assert name in _run("partners", "list").output
    shown = json.loads(_run("partners", "show", name).output)
    assert shown["headers"] == {"X-Key": "42"} and secret not in json.dumps(shown)

    ping = _run("partners", "ping", name)
    assert ping.exit_code == 0 and "succeeded" in ping.output and " 200 " in ping.output
    body = verify(secret, sink.requests()[-1])
    assert body["type"] == "webhook.test" and sink.requests()[-1].headers["x-key"] == "42"

    # a failed delivery, found by the list filter, then resent through the CLI path
    sink.default = Answer(500)
    event_id = events.ingest(unique_article(section=section)).event_id
    context = service.context(schedule=(0,))
    [(delivery_id, _)] = service.dispatch(event_id, context)
    service.attempt(delivery_id, context)
    failed = _run("deliveries", "list", "--partner", name, "--status", "failed")
    assert delivery_id in failed.output and "500" in failed.output
    detail = json.loads(_run("deliveries", "show", delivery_id).output)
    assert detail["status"] == "failed" and detail["attempt_log"][0]["status_code"] == 500
    assert "article" in json.loads(detail["body"])["data"]  # --full-article
    recovered = _run("partners", "recover", name, "--since", "1h")
    assert recovered.exit_code == 0 and delivery_id in recovered.output
    assert deliveries.get(delivery_id)["status"] == "pending"
    assert _run("partners", "recover", name, "--since", "whenever").exit_code == 2

    failing_ping = _run("partners", "ping", name)
    assert failing_ping.exit_code == 1 and "500" in failing_ping.output

    rotated = _run("partners", "rotate-secret", name, "--grace-hours", "0")
    new_secret = rotated.output.split("secret: ")[1].split()[0]
    sink.default = Answer(200)
    _run("partners", "ping", name)
    verify(new_secret, sink.requests()[-1])

    assert "disabled" in _run("partners", "disable", name, "--reason", "x").output
    assert registry.get(name)["enabled"] is False
    assert _run("partners", "enable", name).exit_code == 0
    assert _run("deliveries", "show", "msg_nope").exit_code == 1
    assert _run("partners", "remove", name).exit_code == 0
    assert _run("partners", "show", name).exit_code == 1


def test_cli_ping_and_resend_print_the_attempt(sink, redis_client):
    name = _name()
    section = f"Cli {uuid.uuid4().hex[:6]}"
    assert _run("partners", "add", name, sink.url, "--section", section).exit_code == 0
    ping = _run("partners", "ping", name)
    assert ping.exit_code == 0
    assert re.search(r"#1 \S+  200  \d+\.\d ms  succeeded", ping.output), ping.output

    sink.answer(Answer(503, body=b"down for maintenance"))
    failing = _run("partners", "ping", name)
    assert failing.exit_code == 1
    assert re.search(r"#1 \S+  503  \d+\.\d ms  failed  Service Unavailable", failing.output), failing.output

    sink.default = Answer(500)
    event_id = events.ingest(unique_article(section=section)).event_id
    context = service.context(schedule=(0,))
    [(delivery_id, _)] = service.dispatch(event_id, context)
    service.attempt(delivery_id, context)
    before = sink.count()
    again = _run("deliveries", "resend", delivery_id)  # still 500: the attempt is shown, exit 1
    assert again.exit_code == 1 and sink.count() == before + 1
    assert re.search(r"#2 \S+  500  \d+\.\d ms  (retry|failed)  Internal Server Error", again.output), again.output
    sink.default = Answer(200)
    resent = _run("deliveries", "resend", delivery_id)
    assert resent.exit_code == 0, resent.output
    assert f"resend {delivery_id} to {name}: succeeded" in resent.output
    assert re.search(r"#3 \S+  200  \d+\.\d ms  succeeded", resent.output), resent.output
    requests = sink.requests()[-2:]
    assert requests[0].headers["webhook-id"] == requests[1].headers["webhook-id"] == delivery_id
    assert _run("deliveries", "resend", "msg_nope").exit_code == 1
    registry.remove(name)
