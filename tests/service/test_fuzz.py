"""Generated requests for every operation of the published OpenAPI description (schemathesis): no 5xx,
and every response conforms to the description."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance


@pytest.fixture(scope="module")
def operations(app):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    return {op.label: op for op in (result.ok() for result in schema.get_all_operations())}


@pytest.mark.parametrize("label", ["GET /healthz", "GET /readyz", "GET /vector", "POST /vector", "GET /similar",
                                   "POST /similar", "GET /context-probs"])
def test_generated_requests(operations, label):
    @given(case=operations[label].as_strategy())
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case):
        # Some schema-valid requests are rightly refused: OpenAPI cannot say "word, or positive/negative"
        # for GET /similar, nor "not all zeros" for a vector. test_api.py covers those refusals.
        case.call_and_validate(excluded_checks=[positive_data_acceptance])

    check()
