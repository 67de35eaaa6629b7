"""Fuzz the newsletter endpoints from the OpenAPI document: no input makes them fail with a 5xx."""

from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode

from conftest import ADMIN_AUTH
from newsletter_fixtures import make_list, smtp_sink

OPERATIONS = [
    ("/v1/newsletters/{list_id}", "PUT"),
    ("/v1/newsletters/{list_id}/subscribers", "POST"),
    ("/v1/newsletters/{list_id}/subscribers", "GET"),
    ("/newsletters/{list_id}/subscribe", "POST"),
    ("/newsletters/confirm/{token}", "GET"),
    ("/unsubscribe/{token}", "GET"),
    ("/unsubscribe/{token}", "POST"),
    ("/newsletters/{list_id}/preview", "GET"),
]


@pytest.mark.parametrize("path,method", OPERATIONS)
def test_no_input_makes_the_newsletter_api_fail(api_server, path, method):
    smtp_sink()  # confirmation emails of fuzzed subscriptions land somewhere real
    make_list("fuzz-list")  # so some generated ids hit a real list
    doc = requests.get(f"{api_server}/openapi.json", timeout=10).json()
    operation = schemathesis.openapi.from_dict(doc)[path][method]
    strategy = st.one_of(operation.as_strategy(), operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))

    @given(case=strategy)
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    def run(case):
        kwargs = case.as_transport_kwargs(base_url=api_server, headers=ADMIN_AUTH)
        response = requests.request(**kwargs, timeout=10)
        assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
        if response.status_code >= 400 and path.startswith("/v1/"):
            body = response.json()
            assert body.get("error") and body.get("message"), body

    run()
