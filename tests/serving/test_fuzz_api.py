"""Property-based fuzzing of every endpoint from our own OpenAPI spec (schemathesis).

Each operation gets up to ``EXAMPLES`` generated requests (valid and invalid bodies, paths, queries
and headers); every response must be non-5xx, carry a status code the spec declares, and match
that status's schema. Write endpoints get a valid key on most cases so their bodies are reached.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from serving.app import create_app
from serving.settings import Settings
from tests.serving.conftest import KEY, client_for, make_settings

EXAMPLES = int(os.environ.get("RECSYS_FUZZ_EXAMPLES", "120"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
SPEC = create_app(Settings(model_dir=None)).openapi()
schema = schemathesis.openapi.from_dict(SPEC)
CASES: Counter[str] = Counter()


@pytest.fixture(scope="module")
def fuzz_client(hybrid_artifact, tmp_path_factory):
    # Its own copy of the artifact: the fuzzer adds and withdraws items and reloads.
    settings = make_settings(hybrid_artifact, None, max_k=50, ab_log_dir=tmp_path_factory.mktemp("ab"))
    with client_for(settings) as client:
        yield client


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_no_5xx_and_every_response_matches_the_spec(case, fuzz_client):
    headers = {}
    path = case.operation.path
    if case.method.upper() in ("PUT", "DELETE") or path == "/v1/events":
        headers["X-API-Key"] = KEY  # reach the body's handling; the key checks have their own tests
    kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
    kwargs.pop("timeout", None)
    if not kwargs.get("cookies"):
        kwargs.pop("cookies", None)
    if "data" in kwargs and not isinstance(kwargs["data"], dict):
        kwargs["content"] = kwargs.pop("data")
    response = fuzz_client.request(**kwargs)
    CASES[f"{case.method.upper()} {path}"] += 1
    case.validate_response(response, checks=CHECKS)


@pytest.mark.slow
def test_at_least_a_thousand_cases_over_every_operation():
    operations = {f"{m.upper()} {p}" for p, ops in SPEC["paths"].items() for m in ops}
    if not CASES:
        pytest.skip("run with the fuzzing test above")
    assert operations <= set(CASES)  # (schemathesis also sends methods the spec lacks: 405 expected)
    in_spec = sum(n for op, n in CASES.items() if op in operations)
    print(
        f"fuzzed {sum(CASES.values())} requests, {in_spec} on the spec's {len(operations)} operations: "
        f"{dict(CASES)}"
    )
    assert in_spec >= 1000, CASES
