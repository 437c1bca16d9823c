"""schemathesis over /openapi.json: the document and the server agree.

`st run --checks all` (every phase, every check: schema-violating requests refused,
conforming ones accepted, answers as documented) against the app served on a loopback
port, and its hypothesis strategies directly for the no-5xx property with and without
auth (its pytest plugin does not run under pytest 9). Bounded: a fixed number of
deterministic examples per route.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from werkzeug.serving import make_server

from tests.conftest import AUTH, TOKEN
from tests.payloads import WATCHDOG_ALERT
from tests.test_forecast_shown import filling

EXAMPLES_PER_ROUTE = 30
SCHEMATHESIS = Path(sys.executable).with_name("st")
ALERTMANAGER_GROUP = {
    "version": "4", "groupKey": "{}:{}", "status": "firing", "receiver": "prunehook",
    "alerts": [{"status": "firing", "labels": {"alertname": "DiskFull"}}],
}  # fmt: skip


@pytest.fixture
def fuzzed_app(make_app, clock):
    app = make_app(hmac_secret="whsec_c2VjcmV0LWZvci1mdXp6aW5n")
    filling(app, clock)  # /status answers with a forecast, as the document says it
    return app


def test_openapi_document_describes_every_route(fuzzed_app):
    document = fuzzed_app.test_client().get("/openapi.json").get_json()
    assert document["openapi"] == "3.0.3"
    assert set(document["paths"]) == {
        "/hooks/cron", "/hooks/watchdog", "/hooks/alertmanager", "/status", "/status/{name}",
        "/status/{name}/runs/{run_id}", "/healthz", "/readyz",
    }  # fmt: skip
    schemas = document["components"]["schemas"]
    assert schemas["WatchdogAlert"]["required"] == ["host", "used_percent"]
    answer = schemas["TriggerAnswer"]["properties"]["run"]["allOf"]
    assert answer == [{"$ref": "#/components/schemas/Run"}]
    assert schemas["Status"]["properties"]["recent_runs"]["items"] == answer[0]
    results = schemas["TriggerAnswer"]["properties"]["results"]["items"]
    assert results == {"$ref": "#/components/schemas/TargetAnswer"}
    assert schemas["TargetAnswer"]["properties"]["run"]["allOf"] == answer


def test_schemathesis_with_every_check_finds_nothing(fuzzed_app, tmp_path):
    server = make_server("127.0.0.1", 0, fuzzed_app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        run = subprocess.run(
            [
                str(SCHEMATHESIS), "run", f"http://127.0.0.1:{server.server_port}/openapi.json",
                "--checks", "all", "--header", f"Authorization: Bearer {TOKEN}",
                "--max-examples", str(EXAMPLES_PER_ROUTE), "--generation-deterministic",
                "--workers", "1", "--no-color",
            ],
            cwd=tmp_path, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    finally:
        server.shutdown()
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/hooks/alertmanager", ALERTMANAGER_GROUP | {"truncatedAlerts": 1.0}),
        ("/hooks/alertmanager", ALERTMANAGER_GROUP | {"truncatedAlerts": 2.5}),
        ("/hooks/alertmanager", ALERTMANAGER_GROUP | {"truncatedAlerts": -1}),
        ("/hooks/watchdog", WATCHDOG_ALERT | {"used_percent": "91"}),
        ("/hooks/cron?wait=", None),
        ("/hooks/cron?wait", None),
        ("/hooks/cron?wait=yes", None),
        ("/hooks/cron?wait=TRUE", None),
    ],
)
def test_what_the_document_refuses_the_server_refuses(client, fake_host, path, body):
    response = client.post(path, json=body, headers=AUTH)
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["fields"]
    assert fake_host.commands == []


@pytest.mark.parametrize(
    ("wait", "status", "waited"),
    [("0", 202, False), ("false", 202, False), ("1", 200, True), ("true", 200, True)],
)
def test_every_wait_value_the_document_lists_is_accepted(client, wait, status, waited):
    answer = client.post(f"/hooks/cron?wait={wait}", headers=AUTH)
    assert (answer.status_code, answer.get_json()["decision"]) == (status, "started")
    assert ("run" in answer.get_json()) is waited  # the finished run, only when waited for


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("headers", [AUTH, {}], ids=["valid-auth", "no-auth"])
def test_no_generated_request_gets_a_5xx(fuzzed_app, mode, headers):
    api = schemathesis.openapi.from_wsgi("/openapi.json", fuzzed_app)
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) == 8
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
