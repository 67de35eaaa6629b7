"""Fuzz the API from its own OpenAPI document (schemathesis): no input makes it fail with a 5xx.

Bodies are generated from schemas/article.schema.json (through /openapi.json), both
valid and invalid, so this also checks that what the document promises is what the
server accepts. Every 4xx carries the JSON error body.
"""

from __future__ import annotations

import pytest
import schemathesis
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode

from conftest import INGEST_AUTH



OPERATIONS = [("/v1/articles", "POST"), ("/v1/articles/{article_id}", "GET"),
              ("/v1/articles/{article_id}", "DELETE"), ("/healthz", "GET")]


def _check(api_server, case):
    kwargs = case.as_transport_kwargs(base_url=api_server, headers=INGEST_AUTH)
    response = requests.request(**kwargs, timeout=10)
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:500]}"
    if response.status_code >= 400:
        body = response.json()
        assert body.get("error") and body.get("message"), body


@pytest.mark.parametrize("path,method", OPERATIONS)
def test_no_input_makes_the_api_fail(api_server, path, method):
    doc = requests.get(f"{api_server}/openapi.json", timeout=10).json()
    operation = schemathesis.openapi.from_dict(doc)[path][method]
    strategy = st.one_of(operation.as_strategy(), operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))

    @given(case=strategy)
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    def run(case):
        _check(api_server, case)

    run()
