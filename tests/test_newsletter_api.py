"""The newsletter HTTP API: admin lists and subscribers, double opt-in, one-click unsubscribe, preview."""

from __future__ import annotations

import json
import re

import pytest

from conftest import ADMIN_AUTH, unique_article, wait_for
from newsletter_fixtures import addresses, make_list, publish, smtp_sink, unique_list_id

from syndicate.newsletter import lists, service


@pytest.fixture()
def sink(redis_client):
    return smtp_sink()


def _json(**headers):
    return {**ADMIN_AUTH, "Content-Type": "application/json", **headers}


def test_admin_manages_lists_with_every_problem_reported(api_server, http):
    list_id = unique_list_id()
    url = f"{api_server}/v1/newsletters/{list_id}"
    assert http.put(url, data="{}", headers={"Content-Type": "application/json"}).status_code == 401
    bad = http.put(url, data=json.dumps({"name": "x", "schedule": "0 7 * *", "timezone": "Nowhere/Town"}), headers=_json())
    assert bad.status_code == 422
    assert {p["path"] for p in bad.json()["problems"]} == {"$.schedule", "$.timezone"}
    doc = {"name": "Evening Edition", "schedule": "0 18 * * 1-5", "timezone": "Europe/Paris", "sections": ["World"]}
    created = http.put(url, data=json.dumps(doc), headers=_json())
    assert created.status_code == 201 and created.json()["subject"]  # default subject filled in
    assert http.put(url, data=json.dumps(doc), headers=_json()).status_code == 200
    shown = http.get(url, headers=ADMIN_AUTH).json()
    assert shown["name"] == "Evening Edition" and shown["subscribers"]["confirmed"] == 0
    assert any(item["id"] == list_id for item in http.get(f"{api_server}/v1/newsletters", headers=ADMIN_AUTH).json())
    assert http.delete(url, headers=ADMIN_AUTH).status_code == 204
    assert http.get(url, headers=ADMIN_AUTH).status_code == 404


def test_admin_subscribers_and_csv_import(api_server, http):
    config = make_list()
    base = f"{api_server}/v1/newsletters/{config['id']}/subscribers"
    one, two, three, gone = addresses(4)
    assert http.post(base, data=json.dumps({"email": one}), headers=_json()).status_code == 201
    assert http.post(base, data=json.dumps({"email": "not-an-address"}), headers=_json()).status_code == 422
    assert http.delete(f"{base}/{one}", headers=ADMIN_AUTH).status_code == 204
    lists.add_subscriber(config["id"], gone)
    lists.remove_subscriber(config["id"], gone)
    csv_body = f"Email,name\n{two},Two\n{three},Three\nbroken,X\n{gone},Gone\n{one},One\n"
    result = http.post(f"{base}/import", data=csv_body.encode(), headers={**ADMIN_AUTH, "Content-Type": "text/csv"}).json()
    assert (result["added"], result["invalid"], result["suppressed"]) == (2, 1, 2)
    assert result["problems"] == [{"row": 4, "message": "'broken' is not an email address (ASCII, name@domain.tld)"}]
    confirmed = http.get(base, params={"status": "confirmed"}, headers=ADMIN_AUTH).json()
    assert sorted(s["email"] for s in confirmed) == sorted([two, three])


def test_double_opt_in_with_a_signed_expiring_link(api_server, http, sink, celery_worker):
    config = make_list()
    reader = addresses(1)[0]
    url = f"{api_server}/newsletters/{config['id']}/subscribe"
    response = http.post(url, data={"email": reader})
    assert response.status_code == 202 and "set-cookie" not in response.headers
    assert lists.get_subscriber(config["id"], reader)["status"] == "pending"
    (mail,) = wait_for(lambda: sink.received(reader), message="confirmation email")
    assert mail["Subject"] == "Confirm your subscription to Morning Edition"
    link = re.search(r"(http\S+/newsletters/confirm/\S+)", mail.get_body(("plain",)).get_content()).group(1)
    token = link.rsplit("/", 1)[1]
    forged = token[:-2] + ("x" if token[-2] != "x" else "y") + token[-1]  # always another MAC
    assert http.get(f"{api_server}/newsletters/confirm/{forged}").status_code == 400
    page = http.get(f"{api_server}/newsletters/confirm/{token}")  # what a mail scanner does
    assert page.status_code == 200 and f'<form method="post" action="/newsletters/confirm/{token}">' in page.text
    assert lists.get_subscriber(config["id"], reader)["status"] == "pending"
    done = http.post(f"{api_server}/newsletters/confirm/{token}")  # the reader presses the button
    assert done.status_code == 200 and "Subscribed" in done.text
    assert lists.get_subscriber(config["id"], reader)["status"] == "confirmed"
    # Asking again answers the same and sends nothing.
    assert http.post(url, json={"email": reader}).status_code == 202
    assert len(sink.received(reader)) == 1


def test_one_click_unsubscribe_rfc8058(api_server, http, sink):
    config = make_list()
    publish(unique_article(section=config["sections"][0]))
    reader = addresses(1)[0]
    lists.add_subscriber(config["id"], reader)
    service.run_edition(service.open_manual(config["id"]))
    (mail,) = sink.received(reader)
    https = re.match(r"<(\S+)>", mail["List-Unsubscribe"]).group(1)
    path = "/" + https.split("/", 3)[3]
    page = http.get(api_server + path)
    assert page.status_code == 200 and 'name="List-Unsubscribe" value="One-Click"' in page.text
    assert lists.get_subscriber(config["id"], reader)["status"] == "confirmed"  # GET changes nothing
    assert http.post(api_server + path, data={"List-Unsubscribe": "wrong"}).status_code == 400
    done = http.post(api_server + path, data="List-Unsubscribe=One-Click",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert done.status_code == 200 and "set-cookie" not in done.headers
    assert lists.get_subscriber(config["id"], reader)["status"] == "unsubscribed"
    # Multipart bodies are allowed by RFC 8058 too, and repeating is harmless.
    assert http.post(api_server + path, files={"List-Unsubscribe": (None, "One-Click")}).status_code == 200
    assert http.post(f"{api_server}/unsubscribe/forged.token", data={"List-Unsubscribe": "One-Click"}).status_code == 400
    # The next edition does not reach them.
    publish(unique_article(section=config["sections"][0]))
    service.run_edition(service.open_manual(config["id"]))
    assert len(sink.received(reader)) == 1


def test_preview_shows_the_next_edition_without_sending(api_server, http, sink):
    config = make_list()
    url = f"{api_server}/newsletters/{config['id']}/preview"
    assert http.get(url).status_code == 401
    empty = http.get(url, headers=ADMIN_AUTH)
    assert empty.headers["X-Edition-Stories"] == "0" and "skipped" in empty.text
    story = unique_article(section=config["sections"][0])
    publish(story)
    html = http.get(url, headers=ADMIN_AUTH)
    assert html.headers["content-type"].startswith("text/html") and story["quickLooks"]["items"][0] in html.text
    text = http.get(url, params={"format": "text"}, headers=ADMIN_AUTH)
    assert text.headers["content-type"].startswith("text/plain") and story["headline"] in text.text
    assert http.get(url, headers=ADMIN_AUTH).headers["X-Edition-Stories"] == "1"  # nothing rotated
