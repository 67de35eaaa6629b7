"""Fuzz the newsletter endpoints from the OpenAPI document: no input makes them fail with a 5xx."""

from __future__ import annotations

import pytest

from conftest import ADMIN_AUTH
from fuzzing import fuzz
from newsletter_fixtures import make_list, smtp_sink

OPERATIONS = [
    ("/v1/newsletters/{list_id}", "PUT"),
    ("/v1/newsletters/{list_id}/subscribers", "POST"),
    ("/v1/newsletters/{list_id}/subscribers", "GET"),
    ("/newsletters/{list_id}/subscribe", "POST"),
    ("/newsletters/confirm/{token}", "GET"),
    ("/newsletters/confirm/{token}", "POST"),
    ("/unsubscribe/{token}", "GET"),
    ("/unsubscribe/{token}", "POST"),
    ("/newsletters/{list_id}/preview", "GET"),
]


@pytest.mark.parametrize("path,method", OPERATIONS)
def test_no_input_makes_the_newsletter_api_fail(api_server, path, method):
    smtp_sink()  # confirmation emails of fuzzed subscriptions land somewhere real
    make_list("fuzz-list")  # so some generated ids hit a real list
    # Public pages (unsubscribe, confirm) answer HTML; only the /v1/ API promises JSON errors.
    fuzz(api_server, path, method, ADMIN_AUTH, max_examples=25, json_errors=path.startswith("/v1/"))
