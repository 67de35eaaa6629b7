"""Fuzz the partner admin API from its OpenAPI document: no input makes it answer 5xx.

POST /v1/partners is fuzzed with invalid bodies only (negative mode), so the run
never registers a random partner that other tests' events would then reach.
"""

from __future__ import annotations

import pytest

from conftest import ADMIN_AUTH
from fuzzing import fuzz

NEGATIVE_ONLY = [("/v1/partners", "POST")]
BOTH = [("/v1/partners/{name}", "PUT"), ("/v1/partners/{name}/recover", "POST"),
        ("/v1/deliveries", "GET"), ("/v1/deliveries/{delivery_id}", "GET"),
        ("/v1/partners/{name}/deliveries", "GET")]


def _never_registers(case, response):
    assert response.status_code != 201, "a fuzzed body registered a partner"


@pytest.mark.parametrize("path,method", NEGATIVE_ONLY + BOTH)
def test_no_input_makes_the_partner_api_fail(api_server, path, method):
    fuzz(api_server, path, method, ADMIN_AUTH, max_examples=30,
         negative_only=(path, method) in NEGATIVE_ONLY, extra_check=_never_registers)
