"""Fuzz the API from its own OpenAPI document (schemathesis): no input makes it fail with a 5xx.

Bodies are generated from src/syndicate/schemas/article.schema.json (through /openapi.json), both
valid and invalid, so this also checks that what the document promises is what the
server accepts. Every 4xx carries the JSON error body.
"""

from __future__ import annotations

import pytest

from conftest import INGEST_AUTH
from fuzzing import fuzz

OPERATIONS = [("/v1/articles", "POST"), ("/v1/articles/{article_id}", "GET"),
              ("/v1/articles/{article_id}", "DELETE"), ("/healthz", "GET")]


@pytest.mark.parametrize("path,method", OPERATIONS)
def test_no_input_makes_the_api_fail(api_server, path, method):
    fuzz(api_server, path, method, INGEST_AUTH, max_examples=40)
