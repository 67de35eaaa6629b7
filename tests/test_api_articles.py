"""Ingest through the real HTTP server: every status code the API promises."""

from __future__ import annotations

import copy
import json

import pytest

from conftest import INGEST_AUTH, unique_article, wait_for

from syndicate.store import key

JSON = {**INGEST_AUTH, "Content-Type": "application/json"}


def post(http, url, article, headers=JSON):
    return http.post(f"{url}/v1/articles", data=json.dumps(article).encode(), headers=headers)


def stream_len(redis_client):
    return redis_client.xlen(key("events"))


def test_new_article_is_accepted_as_published(api_server, http):
    article = unique_article()
    response = post(http, api_server, article)
    assert response.status_code == 202
    body = response.json()
    assert body["type"] == "article.published"
    assert body["article_id"] == article["id"] and body["version"] == 1
    assert body["event_id"].startswith("evt_")
    stored = http.get(f"{api_server}/v1/articles/{article['id']}", headers=INGEST_AUTH)
    assert stored.status_code == 200 and stored.json() == article


def test_duplicate_answers_the_first_event_and_enqueues_nothing(api_server, http, redis_client):
    article = unique_article()
    first = post(http, api_server, article).json()
    before = stream_len(redis_client)
    reordered = dict(reversed(list(article.items())))  # same content, other key order
    again = post(http, api_server, reordered)
    assert again.status_code == 200
    assert again.json()["event_id"] == first["event_id"]
    assert again.json()["outcome"] == "duplicate"
    assert stream_len(redis_client) == before


def test_higher_version_is_an_update_and_lower_version_is_stale(api_server, http):
    article = unique_article()
    assert post(http, api_server, article).status_code == 202
    updated = {**article, "version": 2, "headline": "A corrected headline"}
    response = post(http, api_server, updated)
    assert response.status_code == 202 and response.json()["type"] == "article.updated"
    stale = post(http, api_server, article)
    assert stale.status_code == 409
    assert stale.json()["error"] == "stale"
    assert "version 1 is older than the stored version 2" in stale.json()["message"]
    # The stored article is still the newer one.
    assert http.get(f"{api_server}/v1/articles/{article['id']}", headers=INGEST_AUTH).json()["headline"] == "A corrected headline"


def test_same_version_with_different_content_is_a_conflict(api_server, http):
    article = unique_article()
    post(http, api_server, article)
    changed = {**article, "summary": "Someone edited this without raising the version."}
    response = post(http, api_server, changed)
    assert response.status_code == 409
    assert response.json()["error"] == "conflict"
    assert "raise the version to 2" in response.json()["message"]


def test_invalid_article_lists_every_problem_with_its_path(api_server, http):
    article = unique_article()
    article["headline"] = ""
    article["body"]["blocks"][3]["text"] = ""
    del article["quickLooks"]
    article["unknown"] = 1
    response = post(http, api_server, article)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation_failed"
    paths = [p["path"] for p in body["problems"]]
    from syndicate.schemas import problems

    assert paths == [p.path for p in problems("article", article)]  # every problem, in the validator's order
    assert {"$", "$.headline", "$.body.blocks[3].text", "$.unknown"} <= set(paths)
    assert any("quickLooks" in p["message"] for p in body["problems"] if p["path"] == "$")
    assert http.get(f"{api_server}/v1/articles/{article['id']}", headers=INGEST_AUTH).status_code == 404


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dGVzdA=="}])
def test_missing_or_wrong_token_is_401(api_server, http, headers):
    response = post(http, api_server, unique_article(), headers={"Content-Type": "application/json", **headers})
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_body_over_the_limit_is_413(api_server, http):
    article = unique_article()
    article["x-padding"] = "x" * (1024 * 1024 + 10)
    response = post(http, api_server, article)
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


def test_chunked_body_over_the_limit_is_413(api_server, http):
    chunks = (b"x" * 65536 for _ in range(20))  # no Content-Length: streamed
    response = http.post(f"{api_server}/v1/articles", data=chunks, headers=JSON)
    assert response.status_code == 413


def test_malformed_json_is_400(api_server, http):
    response = http.post(f"{api_server}/v1/articles", data=b'{"id": "x",', headers=JSON)
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_json"
    assert "line 1" in response.json()["message"]


def test_invalid_utf8_is_400(api_server, http):
    response = http.post(f"{api_server}/v1/articles", data=b'{"id": "\xff\xfe"}', headers=JSON)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_utf8"


def test_non_json_content_type_is_415(api_server, http):
    response = http.post(f"{api_server}/v1/articles", data=json.dumps(unique_article()),
                         headers={**INGEST_AUTH, "Content-Type": "text/plain"})
    assert response.status_code == 415
    assert "application/json" in response.json()["message"]


def test_delete_retracts_once_and_unknown_id_is_404(api_server, http):
    article = unique_article()
    post(http, api_server, article)
    first = http.delete(f"{api_server}/v1/articles/{article['id']}", headers=INGEST_AUTH)
    assert first.status_code == 202 and first.json()["type"] == "article.retracted"
    again = http.delete(f"{api_server}/v1/articles/{article['id']}", headers=INGEST_AUTH)
    assert again.status_code == 200 and again.json()["event_id"] == first.json()["event_id"]
    stored = http.get(f"{api_server}/v1/articles/{article['id']}", headers=INGEST_AUTH).json()
    assert stored["status"] == "retracted"
    assert http.delete(f"{api_server}/v1/articles/nope-{article['id']}", headers=INGEST_AUTH).status_code == 404


def test_retracted_status_in_a_new_version_is_a_retraction(api_server, http, redis_client):
    article = unique_article()
    post(http, api_server, article)
    response = post(http, api_server, {**article, "version": 2, "status": "retracted"})
    assert response.status_code == 202 and response.json()["type"] == "article.retracted"
    assert redis_client.zscore(key("articles"), article["id"]) is None


def test_get_unknown_article_is_404_json(api_server, http):
    response = http.get(f"{api_server}/v1/articles/does-not-exist", headers=INGEST_AUTH)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_healthz_reports_redis(api_server, http):
    response = http.get(f"{api_server}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "redis": "ok"}


def test_openapi_documents_the_article_schema(api_server, http):
    doc = http.get(f"{api_server}/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    body = doc["paths"]["/v1/articles"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/Article"}
    article = doc["components"]["schemas"]["Article"]
    assert article["unevaluatedProperties"] is False
    assert "quickLooks" in article["required"]
    # Every $ref points inside the document.
    refs = []

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$ref":
                    refs.append(v)
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    names = set(doc["components"]["schemas"])
    for ref in refs:
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in names, ref


def test_concurrent_posts_of_one_article_make_one_event(api_server, redis_client):
    from concurrent.futures import ThreadPoolExecutor

    import requests

    article = unique_article()
    before = stream_len(redis_client)

    def send(_):
        return post(requests, api_server, copy.deepcopy(article))

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(send, range(16)))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(202) == 1 and codes.count(200) == 15
    assert len({r.json()["event_id"] for r in responses}) == 1
    wait_for(lambda: stream_len(redis_client) >= before + 1)
    assert stream_len(redis_client) == before + 1


def test_metrics_count_outcomes_and_show_queue_state(api_server, http):
    def value(text, name):
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                if line.split(" ")[0] == name:
                    return float(line.split(" ")[1])
        return 0.0

    before = http.get(f"{api_server}/metrics").text
    article = unique_article()
    post(http, api_server, article)
    post(http, api_server, article)
    after = http.get(f"{api_server}/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    name = 'syndicate_ingest_total{outcome="duplicate"}'
    assert value(after.text, name) == value(before, name) + 1
    assert 'syndicate_queue_depth{queue="feeds"}' in after.text
    assert "syndicate_events_pending" in after.text


def test_integral_float_version_is_stored_as_an_integer(api_server, http):
    article = unique_article(version=2.0)
    first = post(http, api_server, article)
    assert first.status_code == 202 and first.json()["version"] == 2
    assert post(http, api_server, {**article, "version": 2}).status_code == 200  # the same version: a duplicate
    stored = http.get(f"{api_server}/v1/articles/{article['id']}", headers=INGEST_AUTH).text
    assert type(json.loads(stored)["version"]) is int and '"version":2.0' not in stored.replace(" ", "")
    assert post(http, api_server, {**article, "version": 3, "headline": "Next"}).status_code == 202
