"""The service as deployed: gunicorn with several gthread workers, the real build host."""

from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import TOKEN
from tests.harness import wait_for
from tests.payloads import ALERTMANAGER, WATCHDOG_ALERT


def test_an_alert_storm_across_workers_starts_exactly_one_prune(serve, service_env, build_host):
    served = serve(service_env(build_host))
    ran_before = len(build_host.prunes_run())
    storm = [
        ("/hooks/cron", None),
        ("/hooks/watchdog", WATCHDOG_ALERT),
        ("/hooks/alertmanager", ALERTMANAGER),
    ] * 700

    with ThreadPoolExecutor(max_workers=64) as pool:
        answers = list(pool.map(lambda call: served.call(call[0], body=call[1]), storm))

    assert {code for code, _ in answers} <= {200, 202}
    decisions = [body["decision"] for _, body in answers]
    assert decisions.count("started") == 1
    assert set(decisions) <= {"started", "busy", "skipped"}

    def finished() -> dict | None:
        shown = served.status()
        return shown if shown["in_flight"] is None and shown["last_result"] else None

    shown = wait_for(finished, 60, "the prune to finish")
    assert shown["last_result"] == "ok"
    assert len(shown["recent_runs"]) == 1
    assert len(build_host.prunes_run()) == ran_before + 1


def test_first_start_without_a_token_keeps_the_hooks_closed(serve, tmp_path):
    served = serve({"PRUNEHOOK_DB_PATH": str(tmp_path / "state.sqlite3")}, workers=2)
    token_file = Path(tmp_path / "instance" / "hook-token")
    token = token_file.read_text().strip()

    assert served.call("/hooks/cron", token=None)[0] == 401
    code, body = served.call("/hooks/cron", token=token)
    assert (code, body["decision"]) == (200, "no_target")
    log = served.log_path.read_text()
    assert str(token_file) in log
    assert token not in log

    def told() -> list[str] | None:
        lines = served.log_path.read_text().splitlines()
        said = [json.loads(line) for line in lines if "PRUNEHOOK_TOKEN is not set" in line]
        return sorted(line["level"] for line in said) if len(said) == 2 else None

    # said loudly by the one worker that made the file; the other says it quietly
    assert wait_for(told, 30, "both workers to say where the token is") == ["info", "warning"]


@pytest.mark.parametrize("level", ["", "debug"])
def test_logs_are_json_lines_with_the_request_id_and_no_secret(
    serve, service_env, build_host, level
):
    """At the default level a skip is not logged (it is answered and counted); with
    PRUNEHOOK_LOG_LEVEL=debug it is, at that level."""
    served = serve(service_env(build_host) | {"PRUNEHOOK_LOG_LEVEL": level}, workers=2)

    def cron(request_id: str, query: str = "") -> dict:
        call = urllib.request.Request(
            served.base + "/hooks/cron" + query,
            data=b"",
            headers={"Authorization": f"Bearer {TOKEN}", "X-Request-ID": request_id},
        )
        with urllib.request.urlopen(call, timeout=60) as response:
            return json.loads(response.read())

    assert cron("req-log-1", "?wait=1")["run"]["result"] == "ok"
    assert cron("req-log-2")["decision"] == "skipped"
    served.process.terminate()
    served.process.wait(30)

    text = served.log_path.read_text()
    events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    mine = {event["event"]: event for event in events if event.get("request_id") == "req-log-1"}
    assert mine["trigger"]["decision"] == "started"
    assert mine["run_finished"]["result"] == "ok"
    assert mine["run_finished"]["run_id"] == mine["trigger"]["run_id"]
    skips = [
        (event["level"], event["decision"])
        for event in events
        if event.get("request_id") == "req-log-2"
    ]
    assert skips == ([("debug", "skipped")] if level == "debug" else [])
    for secret in (TOKEN, build_host.client_key.read_text().splitlines()[1]):
        assert secret not in text
