"""Fuzz the partner admin API from its OpenAPI document: no input makes it answer 5xx.

POST /v1/partners is fuzzed with invalid bodies only (negative mode), so the run
never registers a random partner that other tests' events would then reach.
"""

from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode

from conftest import ADMIN_AUTH

NEGATIVE_ONLY = [("/v1/partners", "POST")]
BOTH = [("/v1/partners/{name}", "PUT"), ("/v1/partners/{name}/recover", "POST"),
        ("/v1/deliveries", "GET"), ("/v1/deliveries/{delivery_id}", "GET"),
        ("/v1/partners/{name}/deliveries", "GET")]


def _check(api_server, case):
    response = requests.request(**case.as_transport_kwargs(base_url=api_server, headers=ADMIN_AUTH), timeout=10)
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:500]}"
    if response.status_code >= 400:
        body = response.json()
        assert body.get("error") and body.get("message"), body
    assert response.status_code != 201, "a fuzzed body registered a partner"


@pytest.mark.parametrize("path,method", NEGATIVE_ONLY + BOTH)
def test_no_input_makes_the_partner_api_fail(api_server, path, method):
    doc = requests.get(f"{api_server}/openapi.json", timeout=10).json()
    operation = schemathesis.openapi.from_dict(doc)[path][method]
    negative = operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)
    strategy = negative if (path, method) in NEGATIVE_ONLY else st.one_of(operation.as_strategy(), negative)

    @given(case=strategy)
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    def run(case):
        _check(api_server, case)

    run()
