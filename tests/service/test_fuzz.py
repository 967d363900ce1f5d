"""Generated requests for every operation of the published OpenAPI description (schemathesis), valid and
invalid ones, sent to the service under real gunicorn: no 5xx, and every response conforms to the
description."""
from __future__ import annotations

import pytest
import requests
import schemathesis
from gunicorn.config import Config
from hypothesis import HealthCheck, assume, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

pytestmark = pytest.mark.slow
OPERATIONS = {"GET /healthz", "GET /readyz", "GET /metrics", "GET /openapi.json", "GET /vector", "POST /vector",
              "GET /similar", "POST /similar", "GET /map", "GET /words", "GET /context-probs"}
EXAMPLES = 120  # per operation and mode; operations without inputs run out of distinct requests sooner
MIN_REQUESTS = 1000
# gunicorn itself refuses longer request lines, in plain text, before the service sees them
# (test_gunicorn.py): the description speaks of the requests that reach the service.
REQUEST_LINE_LIMIT = Config().limit_request_line


def test_generated_requests_against_gunicorn(server):
    # Loaded as a document rather than from its URL, which schemathesis would leave out of the operations
    schema = schemathesis.openapi.from_dict(requests.get(f"{server.base}/openapi.json", timeout=10).json())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {operation.label for operation in operations} == OPERATIONS
    statuses = []  # of every request sent, the checks' own extra requests included
    with requests.Session() as session:
        session.hooks["response"].append(lambda response, *args, **kwargs: statuses.append(response.status_code))
        for operation in operations:
            # Invalid requests need inputs to get wrong: the operations without any have none.
            inputs = len(operation.query) or len(operation.body)
            for mode in GenerationMode if inputs else [GenerationMode.POSITIVE]:
                fuzz(operation, mode, server.base, session)
    assert len(statuses) >= MIN_REQUESTS
    assert max(statuses) < 500


def fuzz(operation, mode: GenerationMode, base: str, session: requests.Session) -> None:
    @given(case=operation.as_strategy(mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case):
        assume(len(request_line(case, base)) <= REQUEST_LINE_LIMIT)
        # Some schema-valid requests are rightly refused: OpenAPI cannot say "word, or positive/negative"
        # for GET /similar, nor "not all zeros" for a vector. test_api.py covers those refusals.
        case.call_and_validate(base, session, excluded_checks=[positive_data_acceptance])

    check()


def request_line(case, base: str) -> str:
    sent = case.as_transport_kwargs(base)
    prepared = requests.Request(sent["method"], sent["url"], params=sent.get("params")).prepare()
    return f"{prepared.method} {prepared.path_url} HTTP/1.1"
