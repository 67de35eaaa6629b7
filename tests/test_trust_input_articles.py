"""Property-based: valid articles generated from the schema, then mutated, never make a 5xx.

The valid articles come from schemathesis, generated from the Article schema in
the API's own /openapi.json (itself built from src/syndicate/schemas/article.schema.json).
hypothesis-jsonschema, the other maintained generator, does not run on the
hypothesis release schemathesis needs (it calls a removed internal, many.more);
hypothesis then drops, replaces and inserts values, hostile strings among them.
Every answer is below 500; a refusal carries the JSON error body; an article the
validator accepts is accepted, and an accepted article reads back exactly as sent.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import INGEST_AUTH

from syndicate.ingest import normalize
from syndicate.schemas import problems

JSON = {**INGEST_AUTH, "Content-Type": "application/json"}

HOSTILE_STRINGS = [
    "", " ", "\ud800", "a\udfffb", "\x00", "line\r\nbreak", "\u2028\u2029\u0085", "\x1b[31mred", "\ufeffbom",
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "]]><x>", "{{7*7}}", "${jndi:ldap://x}", "%s%n",
    "=?utf-8?q?=0D=0ABcc:_x@example.com?=", "\u202eevil", "😀" * 50, "x" * 5000, "2026-02-30T00:00:00Z",
    "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "2016-12-31T23:59:60Z", "javascript:alert(1)",
]
HOSTILE_VALUES = st.one_of(
    st.sampled_from(HOSTILE_STRINGS),
    st.text(max_size=40),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.lists(st.sampled_from(HOSTILE_STRINGS), max_size=3),
    st.dictionaries(st.sampled_from(["x-a", "type", "text", "url", "zz"]), st.sampled_from(HOSTILE_STRINGS), max_size=2),
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(_paths(v, (*prefix, i)))
    return out


def _parent(doc: Any, path: tuple) -> Any:
    for part in path[:-1]:
        doc = doc[part]
    return doc


@st.composite
def mutated(draw: st.DrawFn, article: dict) -> dict:
    """``article`` with up to three drops, replacements or insertions anywhere in it."""
    doc = json.loads(json.dumps(article))
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        action = draw(st.sampled_from(["drop", "replace", "insert"]))
        if not path:
            action = "insert"
        if action == "drop":
            parent = _parent(doc, path)
            del parent[path[-1]]
        elif action == "replace":
            _parent(doc, path)[path[-1]] = draw(HOSTILE_VALUES)
        else:
            target = doc if not path else _parent(doc, path)[path[-1]]
            if isinstance(target, dict):
                target[draw(st.sampled_from(["x-extra", "extra", "headline", "\ud800", "id", ""]))] = draw(HOSTILE_VALUES)
            elif isinstance(target, list):
                target.insert(draw(st.integers(0, len(target))), draw(HOSTILE_VALUES))
    return doc


def _post(api_server: str, doc: Any) -> requests.Response:
    return requests.post(f"{api_server}/v1/articles", data=json.dumps(doc).encode(), headers=JSON, timeout=30)


def _check(api_server: str, doc: Any) -> None:
    response = _post(api_server, doc)
    assert response.status_code < 500, f"{response.status_code} {response.text[:500]}"
    body = response.json()
    if response.status_code >= 400:
        assert body.get("error") and body.get("message"), body
    try:
        json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        valid = False  # a lone surrogate: refused before validation
    else:
        valid = isinstance(doc, dict) and not problems("article", doc)
    if valid:
        assert response.status_code in (200, 202), f"a valid article was refused: {body}"
    if response.status_code in (200, 202):
        stored = requests.get(f"{api_server}/v1/articles/{doc['id']}", headers=INGEST_AUTH, timeout=30)
        assert stored.status_code == 200 and stored.json() == normalize(doc)


def _narrow(node: Any) -> Any:
    """The document with every maxLength and maxItems capped: still the schema's rules, and every
    article generated under them is valid under the real ones, but generation takes a tenth of the time."""
    if isinstance(node, dict):
        out = {k: _narrow(v) for k, v in node.items()}
        if isinstance(out.get("maxLength"), int):
            out["maxLength"] = min(out["maxLength"], 80)
        if isinstance(out.get("maxItems"), int):
            out["maxItems"] = min(out["maxItems"], 3)
        return out
    if isinstance(node, list):
        return [_narrow(v) for v in node]
    return node


def _articles(api_server: str):
    doc = _narrow(requests.get(f"{api_server}/openapi.json", timeout=10).json())
    operation = schemathesis.openapi.from_dict(doc)["/v1/articles"]["POST"]
    return operation.as_strategy().map(lambda case: case.body)


def _run(api_server: str, examples: int) -> None:
    @given(data=st.data())
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    def run(data):
        article = data.draw(_articles_strategy)
        article["id"] = f"p-{uuid.uuid4().hex[:12]}"  # generated ids repeat; a repeat would be a conflict
        _check(api_server, article)  # unmutated: valid per the schema, so accepted and read back
        for _ in range(3):
            mutant = data.draw(mutated(article))
            if mutant.get("id") == article["id"]:  # a mutated id stays as the mutation left it
                mutant["id"] = f"p-{uuid.uuid4().hex[:12]}"
            _check(api_server, mutant)

    _articles_strategy = _articles(api_server)
    run()


def test_generated_and_mutated_articles_never_make_a_5xx(api_server):
    _run(api_server, examples=10)


@pytest.mark.slow
def test_many_generated_and_mutated_articles_never_make_a_5xx(api_server):
    _run(api_server, examples=150)
