"""schemathesis over /openapi.json: no generated request, with or without auth, gets a 5xx.

Driven through schemathesis' hypothesis strategies rather than its pytest plugin, which
does not run under pytest 9. Bounded: a fixed number of derandomized examples per route.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.conftest import AUTH

EXAMPLES_PER_ROUTE = 30


@pytest.fixture
def fuzzed_app(make_app):
    return make_app(hmac_secret="whsec_c2VjcmV0LWZvci1mdXp6aW5n")


def test_openapi_document_describes_every_route(fuzzed_app):
    document = fuzzed_app.test_client().get("/openapi.json").get_json()
    assert document["openapi"] == "3.0.3"
    assert set(document["paths"]) == {
        "/hooks/cron", "/hooks/watchdog", "/hooks/alertmanager", "/status", "/healthz",
    }  # fmt: skip
    assert document["components"]["schemas"]["WatchdogAlert"]["required"] == [
        "host",
        "used_percent",
    ]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("headers", [AUTH, {}], ids=["valid-auth", "no-auth"])
def test_no_generated_request_gets_a_5xx(fuzzed_app, mode, headers):
    api = schemathesis.openapi.from_wsgi("/openapi.json", fuzzed_app)
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) == 5
    if mode == GenerationMode.NEGATIVE:  # only the hooks take input that can be made invalid
        operations = [each for each in operations if each.path.startswith("/hooks/")]

    for operation in operations:

        @settings(
            max_examples=EXAMPLES_PER_ROUTE,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(mode))
        def no_server_error(case) -> None:
            case.call_and_validate(headers=headers, checks=[not_a_server_error])

        no_server_error()
