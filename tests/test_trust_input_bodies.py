"""No request body, path or query value makes the API answer 5xx (issue 8, class 4).

The routes come from the served OpenAPI document, not a hand list: a new write
endpoint is covered the day it is added. Each hostile body goes to every write
operation; an operation that documents a JSON body must refuse it with the exact
4xx and the JSON error body, the others must at least never fail with a 5xx.
"""

from __future__ import annotations

import json
import re

import pytest
import requests

from conftest import ADMIN_AUTH, INGEST_AUTH, unique_article

DEEP = 100_000

# name -> (body bytes, the status an endpoint that reads JSON must answer, a path the body names or None)
HOSTILE: dict[str, tuple[bytes, int, str | None]] = {
    "lone high surrogate": (b'{"id": "\\ud800"}', 400, "$.id"),
    "lone low surrogate in a key": (b'{"\\udfff": 1}', 400, None),
    "reversed surrogate pair": (b'{"a": ["\\udc00\\ud800"]}', 400, "$.a[0]"),
    "nesting 100000 deep": (b"[" * DEEP + b"]" * DEEP, 400, None),
    "objects nested 1000 deep": (b'{"a":' * 1000 + b"1" + b"}" * 1000, 400, None),
    "nesting past the limit": (b'{"x-a":' + b"[" * 80 + b"]" * 80 + b"}", 400, '$["x-a"]' + "[0]" * 63),
    "1e400": (b'{"version": 1e400}', 400, "$.version"),
    "-1e400": (b'{"n": [-1e400]}', 400, "$.n[0]"),
    "a 5000-digit integer": (b'{"version": ' + b"9" * 5000 + b"}", 400, "$.version"),
    "duplicate keys": (b'{"id": "a", "id": "b"}', 400, "$.id"),
    "duplicate keys deeper": (b'{"body": {"blocks": [{"type": "x", "type": "y"}]}}', 400, "$.body.blocks[0].type"),
    "NaN": (b'{"version": NaN}', 400, "$.version"),
    "Infinity": (b'{"version": Infinity}', 400, "$.version"),
    "-Infinity": (b'{"version": -Infinity}', 400, "$.version"),
    "byte order mark": (b"\xef\xbb\xbf{}", 400, None),
    "empty": (b"", 400, None),
    "only whitespace": (b" \r\n\t", 400, None),
    "invalid UTF-8": (b'{"id": "\xc3\x28"}', 400, None),
    "surrogate encoded as UTF-8 bytes": (b'{"id": "\xed\xa0\x80"}', 400, None),
    "truncated": (b'{"id": "x",', 400, None),
    "top-level array": (b"[]", 422, "$"),
    "top-level string": (b'"x"', 422, "$"),
    "top-level number": (b"1", 422, "$"),
    "top-level null": (b"null", 422, "$"),
    "over the size limit": (b'{"x-pad": "' + b"x" * (1024 * 1024 + 10) + b'"}', 413, None),
}

# Path values that exist nowhere, well formed for each parameter's pattern.
PATH_VALUES = {"article_id": "no-such-article", "fmt": "rss", "slug": "nosection", "name": "no-such-partner",
               "delivery_id": "msg_nosuch", "list_id": "no-such-list", "email": "nobody@example.com",
               "edition_id": "ed_nosuch", "token": "not-a-token"}


def _document(api_server: str) -> dict:
    return requests.get(f"{api_server}/openapi.json", timeout=10).json()


def _auth(path: str) -> dict[str, str]:
    return INGEST_AUTH if path.startswith("/v1/articles") else ADMIN_AUTH


def _fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


def _assert_json_error(response: requests.Response, what: str) -> dict | None:
    assert response.status_code < 500, f"{what}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400 and response.headers.get("content-type", "").startswith("application/json"):
        body = response.json()
        assert body.get("error") and body.get("message"), f"{what}: {body}"
        return body
    return None


def _write_operations(doc: dict) -> list[tuple[str, str, bool]]:
    """(method, path, documents a JSON body) for every write operation of the document."""
    out = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if method in ("post", "put", "patch"):
                content = op.get("requestBody", {}).get("content", {})
                out.append((method.upper(), path, "application/json" in content))
    return out


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_hostile_body_on_every_write_endpoint_is_a_4xx_with_a_json_error(api_server, case):
    raw, expected, named_path = HOSTILE[case]
    operations = _write_operations(_document(api_server))
    assert ("POST", "/v1/articles", True) in operations and len(operations) >= 10
    with requests.Session() as http:
        for method, path, takes_json in operations:
            what = f"{case}: {method} {path}"
            response = http.request(method, api_server + _fill(path, PATH_VALUES), data=raw, timeout=30,
                                    headers={**_auth(path), "Content-Type": "application/json"})
            body = _assert_json_error(response, what)
            if not takes_json:
                continue
            assert response.status_code == expected, f"{what}: {response.status_code} {response.text[:300]}"
            assert body is not None, what
            if named_path is not None:
                assert named_path in [p["path"] for p in body["problems"]], f"{what}: {body}"


def test_duplicate_keys_are_refused_naming_the_key(api_server, http):
    article = unique_article()
    text = json.dumps(article)
    raw = text[:-1] + ', "headline": "A second headline"}'
    response = http.post(f"{api_server}/v1/articles", data=raw.encode(),
                         headers={**INGEST_AUTH, "Content-Type": "application/json"})
    assert response.status_code == 400
    problems = response.json()["problems"]
    assert problems == [{"path": "$.headline", "message": problems[0]["message"]}]
    assert '"headline"' in problems[0]["message"] and "more than once" in problems[0]["message"]
    assert http.get(f"{api_server}/v1/articles/{article['id']}", headers=INGEST_AUTH).status_code == 404


def test_a_lone_surrogate_inside_a_valid_article_names_its_path(api_server, http):
    article = unique_article()
    article["body"]["blocks"][2]["text"] = "before \ud800 after"
    raw = json.dumps(article)  # ensure_ascii: the surrogate travels as the escape \ud800
    response = http.post(f"{api_server}/v1/articles", data=raw.encode(),
                         headers={**INGEST_AUTH, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert [p["path"] for p in response.json()["problems"]] == ["$.body.blocks[2].text"]
    # A proper pair (an emoji) written as escapes is fine and comes back as the character.
    article["body"]["blocks"][2]["text"] = "before \U0001F600 after"
    response = http.post(f"{api_server}/v1/articles", data=json.dumps(article).encode(),
                         headers={**INGEST_AUTH, "Content-Type": "application/json"})
    assert response.status_code == 202, response.text
    stored = http.get(f"{api_server}/v1/articles/{article['id']}", headers=INGEST_AUTH).json()
    assert stored["body"]["blocks"][2]["text"] == "before \U0001F600 after"


# Percent-encoded path and query values: a surrogate's UTF-8 bytes, invalid UTF-8, C0 controls,
# CR/LF, ESC, a line separator, an overlong slash, a code point past U+10FFFF, dot segments,
# and numbers no integer or double parameter can hold.
HOSTILE_VALUES = ["%ED%A0%80", "%FF%FE", "%00", "%0D%0ASet-Cookie:%20x=1", "%1B%5B31m", "%E2%80%A8",
                  "%C0%AF", "%F4%90%80%80", "..%2F..%2Fetc", "%5Cud800", "a" * 5000, "9" * 5000, "1e400",
                  "NaN", "-Infinity", "-0"]


@pytest.mark.parametrize("value", HOSTILE_VALUES, ids=lambda v: v[:20])
def test_hostile_path_and_query_values_never_make_a_5xx(api_server, value):
    doc = _document(api_server)
    with requests.Session() as http:
        for path, ops in doc["paths"].items():
            for method, op in ops.items():
                params = op.get("parameters", [])
                names = [p["name"] for p in params if p["in"] == "path"]
                queries = [p["name"] for p in params if p["in"] == "query"]
                targets = [(n, None) for n in names] + [(None, q) for q in queries]
                for in_path, in_query in targets:
                    values = {**PATH_VALUES, **({in_path: value} if in_path else {})}
                    url = api_server + _fill(path, values) + (f"?{in_query}={value}" if in_query else "")
                    response = http.request(method.upper(), url, headers=_auth(path), timeout=30)
                    if method != "head":
                        _assert_json_error(response, f"{method.upper()} {url[:120]}")
                    else:
                        assert response.status_code < 500, f"HEAD {url[:120]}: {response.status_code}"
