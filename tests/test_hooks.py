"""The hooks and /status as a caller sees them; the build host is a fake at our boundary."""

from __future__ import annotations

import io
import logging
import os
import re
import stat

import pytest

from tests.conftest import AUTH, START, TOKEN
from tests.payloads import ALERTMANAGER, WATCHDOG_ALERT
from webhook.core.outcome import Execution

EXACT_COMMAND = "docker builder prune -f --filter until=24h"
HOOKS = ["/hooks/cron", "/hooks/watchdog", "/hooks/alertmanager"]


def status(client) -> dict:
    response = client.get("/status")
    assert response.status_code == 200
    return response.get_json()


@pytest.mark.parametrize("path", HOOKS)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": "Bearer "}],
)
def test_hook_without_the_right_token_is_401_and_runs_nothing(client, fake_host, path, headers):
    response = client.post(path, json=WATCHDOG_ALERT, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert fake_host.commands == []
    assert status(client)["last_run_ts"] is None


def test_hooks_are_never_open_a_token_is_generated_on_first_start(make_app, tmp_path, fake_host):
    client = make_app(token="").test_client()
    token_file = tmp_path / "instance" / "hook-token"
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    assert client.post("/hooks/cron").status_code == 401
    generated = token_file.read_text().strip()
    response = client.post("/hooks/cron", headers={"Authorization": f"Bearer {generated}"})
    assert response.status_code == 202
    assert make_app(token="").extensions["prunehook"].settings.auth.token == generated


def test_cron_ping_with_empty_body_starts_exactly_the_contract_command(client, fake_host):
    response = client.post("/hooks/cron", headers=AUTH)
    assert response.status_code == 202
    body = response.get_json()
    assert body["decision"] == "started"
    assert body["run_id"] == 1
    client.application.extensions["prunehook"].join_all(10)
    assert fake_host.commands == [EXACT_COMMAND]
    shown = status(client)
    assert shown["last_run_ts"] == START
    assert shown["last_reclaimed"] == "1.5GB"
    assert shown["last_reclaimed_bytes"] == 1_500_000_000
    assert shown["last_error"] is None
    assert shown["in_flight"] is None


def test_wait_returns_the_run_result(client, fake_host):
    response = client.post("/hooks/cron?wait=1", headers=AUTH)
    assert response.status_code == 200
    run = response.get_json()["run"]
    assert (run["result"], run["rc"], run["reclaimed"]) == ("ok", 0, "1.5GB")
    assert run["command"] == EXACT_COMMAND


def test_second_alert_within_interval_is_skipped(client, fake_host, clock):
    # under the critical percent (95): a critical alert's own limit is in test_critical.py
    alert = WATCHDOG_ALERT | {"used_percent": 91}
    assert client.post("/hooks/watchdog?wait=true", json=alert, headers=AUTH).status_code == 200
    clock.advance(60)
    response = client.post("/hooks/watchdog", json=alert, headers=AUTH)
    assert response.status_code == 200
    body = response.get_json()
    assert body["decision"] == "skipped"
    assert body["next_eligible_ts"] == START + 21600
    assert len(fake_host.commands) == 1


def test_a_trigger_that_starts_nothing_is_logged_only_at_debug(client, fake_host, caplog):
    """A skip is what an alert storm repeats all day: answered and counted, logged at DEBUG
    (PRUNEHOOK_LOG_LEVEL=debug); a start is logged at INFO."""
    with caplog.at_level(logging.DEBUG, logger="webhook"):
        started = client.post("/hooks/cron?wait=1", headers=AUTH).get_json()
        skipped = client.post("/hooks/cron", headers=AUTH)

    assert skipped.get_json()["decision"] == "skipped"
    decided = [r for r in caplog.records if getattr(r, "fields", {}).get("event") == "trigger"]
    shown = [(r.levelno, r.fields["decision"]) for r in decided]
    assert shown == [(logging.INFO, "started"), (logging.DEBUG, "skipped")]
    # the keys docs/status.md ("Logs") promises
    said = {key: decided[0].fields[key] for key in ("request_id", "source", "target", "run_id")}
    assert said == {
        "request_id": started["request_id"],
        "source": "cron",
        "target": started["target"],
        "run_id": started["run_id"],
    }
    assert decided[0].fields["reason"] == started["reason"]


def test_trigger_after_the_interval_prunes_again(client, fake_host, clock):
    client.post("/hooks/cron?wait=1", headers=AUTH)
    clock.advance(21600)
    assert client.post("/hooks/cron?wait=1", headers=AUTH).get_json()["decision"] == "started"
    assert len(fake_host.commands) == 2
    assert [run["id"] for run in status(client)["recent_runs"]] == [2, 1]


def test_trigger_while_a_prune_is_in_flight_is_busy(client, fake_host, clock):
    fake_host.hold()
    assert client.post("/hooks/cron", headers=AUTH).status_code == 202
    clock.advance(100)  # inside the 180 s lease
    response = client.post("/hooks/cron", headers=AUTH)
    assert response.get_json()["decision"] == "busy"
    in_flight = status(client)["in_flight"]
    assert in_flight["run_id"] == 1 and not in_flight["lease_expired"]
    fake_host.release.set()


def test_alertmanager_v4_as_really_sent_starts_a_prune(client, fake_host):
    response = client.post("/hooks/alertmanager?wait=1", json=ALERTMANAGER, headers=AUTH)
    assert response.status_code == 200
    assert response.get_json()["decision"] == "started"
    assert fake_host.commands == [EXACT_COMMAND]
    assert status(client)["recent_runs"][0]["trigger"] == "alertmanager:prunehook"


def test_resolved_alertmanager_notification_never_prunes(client, fake_host):
    resolved_alert = ALERTMANAGER["alerts"][0] | {
        "status": "resolved",
        "endsAt": "2026-11-25T02:00:00Z",
    }
    resolved = ALERTMANAGER | {"status": "resolved", "alerts": [resolved_alert]}
    response = client.post("/hooks/alertmanager", json=resolved, headers=AUTH)
    assert response.status_code == 200
    assert response.get_json()["decision"] == "ignored"
    assert fake_host.commands == []


def test_resolved_watchdog_alert_is_ignored(client, fake_host):
    alert = WATCHDOG_ALERT | {"status": "resolved", "used_percent": 40}
    response = client.post("/hooks/watchdog", json=alert, headers=AUTH)
    assert (response.status_code, response.get_json()["decision"]) == (200, "ignored")
    assert fake_host.commands == []


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/hooks/watchdog", {"host": "build-1"}, "used_percent"),
        ("/hooks/watchdog", WATCHDOG_ALERT | {"used_percent": "very"}, "used_percent"),
        ("/hooks/watchdog", WATCHDOG_ALERT | {"used_percent": 140}, "used_percent"),
        ("/hooks/watchdog", WATCHDOG_ALERT | {"status": "panic"}, "status"),
        ("/hooks/watchdog", WATCHDOG_ALERT | {"usedpercent": 90}, "usedpercent"),
        ("/hooks/alertmanager", ALERTMANAGER | {"version": "3"}, "version"),
        ("/hooks/alertmanager", ALERTMANAGER | {"alerts": "many"}, "alerts"),
        ("/hooks/alertmanager", {"version": "4"}, "alerts"),
        ("/hooks/cron", {"source": 42}, "source"),
    ],
)
def test_invalid_payload_is_422_naming_the_field_and_runs_nothing(
    client, fake_host, path, payload, field
):
    response = client.post(path, json=payload, headers=AUTH)
    assert response.status_code == 422
    body = response.get_json()
    assert body["error"] == "validation_failed"
    assert field in body["fields"]
    assert fake_host.commands == []


@pytest.mark.parametrize("path", HOOKS[1:])
@pytest.mark.parametrize(
    ("raw", "code", "status_code"),
    [
        (b"{not json", "invalid_json", 400),
        (b"", "empty_body", 400),
        (b"[1, 2]", "validation_failed", 422),
    ],
)
def test_malformed_body_is_a_4xx_json_error(client, fake_host, path, raw, code, status_code):
    response = client.post(path, data=raw, headers=AUTH | {"Content-Type": "application/json"})
    assert response.status_code == status_code
    assert response.get_json()["error"] == code
    assert fake_host.commands == []


@pytest.mark.parametrize(
    "framing",
    [
        {"CONTENT_LENGTH": "9"},
        # a sender that streams its body names no length
        {"HTTP_TRANSFER_ENCODING": "chunked"},
        {"HTTP_TRANSFER_ENCODING": "chunked", "CONTENT_LENGTH": "0"},  # chunked wins
        {"SERVER_PROTOCOL": "HTTP/2.0"},  # frames a body without either header
    ],
)
def test_a_cron_ping_with_a_body_has_it_read_however_it_is_framed(client, fake_host, framing):
    body = {"wsgi.input": io.BytesIO(b"{not json"), "wsgi.input_terminated": True}
    response = client.post("/hooks/cron", headers=AUTH, environ_overrides=body | framing)
    assert (response.status_code, response.get_json()["error"]) == (400, "invalid_json")
    assert fake_host.commands == []


def test_oversized_body_is_413_json(client, fake_host):
    huge = b'{"host": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = client.post("/hooks/watchdog", data=huge, headers=AUTH)
    assert response.status_code == 413
    assert response.get_json()["error"] == "request_entity_too_large"
    assert fake_host.commands == []


def test_bad_wait_flag_is_rejected_before_anything_runs(client, fake_host):
    response = client.post("/hooks/cron?wait=perhaps", headers=AUTH)
    assert response.status_code == 422
    assert "wait" in response.get_json()["fields"]
    assert fake_host.commands == []


def test_no_request_field_reaches_the_remote_command(client, fake_host):
    hostile = WATCHDOG_ALERT | {"host": "x; rm -rf /", "mount": "$(reboot)"}
    client.post("/hooks/watchdog?wait=1", json=hostile, headers=AUTH)
    client.post("/hooks/cron?wait=1", json={"source": "`id`"}, headers=AUTH)
    assert set(fake_host.commands) == {EXACT_COMMAND}


def test_kill_switch_answers_disabled_and_runs_nothing(make_app, fake_host):
    client = make_app(enabled=False).test_client()
    response = client.post("/hooks/cron", headers=AUTH)
    assert (response.status_code, response.get_json()["decision"]) == (200, "disabled")
    assert fake_host.commands == []
    assert status(client)["enabled"] is False


def test_no_target_answers_no_target_and_runs_nothing(make_app, fake_host):
    client = make_app(ssh_host="").test_client()
    response = client.post("/hooks/watchdog", json=WATCHDOG_ALERT, headers=AUTH)
    assert (response.status_code, response.get_json()["decision"]) == (200, "no_target")
    assert "PRUNEHOOK_SSH_HOST or PRUNEHOOK_TARGETS_FILE" in response.get_json()["reason"]
    assert fake_host.commands == []
    assert status(client)["target"] is None


def test_failed_run_is_recorded_and_retried_after_the_retry_delay(client, fake_host, clock):
    fake_host.execution = Execution(1, "", "Error response from daemon: permission denied\n", 0.1)
    run = client.post("/hooks/cron?wait=1", headers=AUTH).get_json()["run"]
    assert (run["result"], run["error_kind"]) == ("failed", "docker_error")
    shown = status(client)
    assert shown["last_error"] == "rc=1: Error response from daemon: permission denied"
    assert shown["next_eligible_ts"] == START + 600
    clock.advance(599)
    assert client.post("/hooks/cron", headers=AUTH).get_json()["decision"] == "skipped"
    clock.advance(1)
    assert client.post("/hooks/cron?wait=1", headers=AUTH).get_json()["decision"] == "started"


def test_a_runner_that_raises_is_recorded_never_a_crash(make_settings, clock, tmp_path):
    from webhook import create_app

    def explode(target, command: str) -> Execution:
        raise RuntimeError("boom")

    app = create_app(make_settings(), execute=explode, clock=clock, instance_path=str(tmp_path))
    client = app.test_client()
    response = client.post("/hooks/cron?wait=1", headers=AUTH)
    assert response.status_code == 200
    assert response.get_json()["run"]["error_kind"] == "internal"
    assert status(client)["last_error"] == "RuntimeError"


def test_status_has_the_seed_keys_and_what_an_operator_needs(client):
    shown = status(client)
    for key in (
        "enabled", "interval_s", "until", "all", "last_run_ts", "last_reclaimed",
        "last_reclaimed_bytes", "last_error", "in_flight", "next_eligible_ts", "target",
        "recent_runs", "command",
    ):  # fmt: skip
        assert key in shown
    assert (shown["target"], shown["host"]) == ("127.0.0.1", "ci@127.0.0.1:22")
    assert shown["command"] == EXACT_COMMAND
    assert shown["eligible_now"] is True
    assert TOKEN not in str(shown)


def test_healthz_answers(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("method", "path", "status_code", "code"),
    [("get", "/nope", 404, "not_found"), ("get", "/hooks/cron", 405, "method_not_allowed")],
)
def test_every_error_is_the_same_json_shape(client, method, path, status_code, code):
    response = getattr(client, method)(path, headers={"X-Request-ID": "req-42"})
    assert response.status_code == status_code
    body = response.get_json()
    assert (body["error"], body["request_id"]) == (code, "req-42")
    assert response.headers["X-Request-ID"] == "req-42"


def test_a_request_without_an_id_gets_one_of_its_own(client, fake_host):
    ids = [client.post("/hooks/cron", headers=AUTH).headers["X-Request-ID"] for _ in range(50)]
    assert len(set(ids)) == 50
    assert all(re.fullmatch(r"[0-9a-f]{32}", request_id) for request_id in ids)


def test_an_unexpected_error_is_a_json_500_with_the_request_id_and_every_header(
    client, fake_host, monkeypatch, caplog
):
    def broken(target: str) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(
        client.application.extensions["prunehook"].service.store, "read_state", broken
    )
    response = client.post("/hooks/cron", headers=AUTH | {"X-Request-ID": "req-500"})
    assert response.status_code == 500
    assert response.get_json() == {
        "error": "internal_error",
        "message": "internal error; see the service log",
        "request_id": "req-500",
    }
    assert response.headers.getlist("X-Request-ID") == ["req-500"]
    assert response.headers.getlist("X-Content-Type-Options") == ["nosniff"]
    assert len(response.headers.getlist("Content-Security-Policy")) == 1
    assert "RuntimeError: a bug" in caplog.text
    assert fake_host.commands == []


@pytest.mark.parametrize("given", ["req-1\n", "x" * 129, "a b", ""])
def test_a_request_id_that_is_not_sane_is_replaced_by_one_of_our_own(client, fake_host, given):
    response = client.post(
        "/hooks/cron", headers=AUTH, environ_overrides={"HTTP_X_REQUEST_ID": given}
    )
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])
    assert response.get_json()["request_id"] == response.headers["X-Request-ID"]
