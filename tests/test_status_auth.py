"""Who may read: PRUNEHOOK_STATUS_TOKEN closes /status, its pages, a run's tails and /metrics;
the health routes and the API document stay open; the output tails always need a token."""

from __future__ import annotations

import base64
import logging

import pytest

from tests.conftest import AUTH, TOKEN
from tests.test_status_page import BROWSER
from webhook.app import create_app
from webhook.config import ConfigError, Settings, load_settings
from webhook.preflight import run_checks

STATUS_TOKEN = "status-token-2c81d0e4a6f9b357"
WRONG = "wrong-token-0123456789abcdef"
OPEN = {"/healthz", "/readyz", "/openapi.json"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(user: str, password: str) -> dict[str, str]:
    pair = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


def reading_routes(client) -> list[str]:
    """The routes a reader uses, with a target and a run of it."""
    run_id = client.post("/hooks/cron?wait=1", headers=AUTH).get_json()["run"]["id"]
    return ["/status", "/status/127.0.0.1", f"/status/127.0.0.1/runs/{run_id}", "/metrics"]


@pytest.fixture
def closed(make_app):
    return make_app(status_token=STATUS_TOKEN).test_client()


@pytest.mark.parametrize(
    ("credentials", "status"),
    [
        ({}, 401),
        (bearer(STATUS_TOKEN), 200),
        (basic("anyone", STATUS_TOKEN), 200),
        (basic("", STATUS_TOKEN), 200),
        (AUTH, 200),  # the hook token
        (basic("ops", TOKEN), 200),
    ],
)
def test_with_a_status_token_every_reading_route_needs_a_token(closed, credentials, status):
    for path in reading_routes(closed):
        answer = closed.get(path, headers=credentials)
        assert answer.status_code == status, path
        if status == 401:
            assert answer.get_json()["error"] == "unauthorized"
            assert answer.headers["WWW-Authenticate"] == 'Bearer realm="prunehook"'


@pytest.mark.parametrize(
    "credentials",
    [
        bearer(WRONG),
        basic("ops", WRONG),
        basic(STATUS_TOKEN, ""),  # the token as the user name is no password
        basic("ops", STATUS_TOKEN + "x"),
        {"Authorization": "Basic not-base64!"},
        {"Authorization": f"Token {STATUS_TOKEN}"},
        {"Authorization": STATUS_TOKEN},
    ],
)
def test_a_wrong_or_misplaced_token_is_401(closed, credentials):
    for path in reading_routes(closed):
        assert closed.get(path, headers=credentials).status_code == 401, path


@pytest.mark.parametrize(
    "token",
    ["dGhlLWhvb2stdG9rZW4tb2YtYmFzZTY0=", "dGhlLWhvb2s=LXRva2VuLW9m"],
    ids=["padded-base64", "two-base64-joined"],
)
def test_a_token_with_an_equals_sign_triggers_and_reads_status(
    env_for, ssh_keys, fake_host, tmp_path, token
):
    env_for(ssh_keys, PRUNEHOOK_TOKEN=token, PRUNEHOOK_STATUS_TOKEN=STATUS_TOKEN)
    app = create_app(execute=fake_host, instance_path=str(tmp_path / "instance"))
    client = app.test_client()
    assert client.post("/hooks/cron?wait=1", headers=bearer(token)).status_code == 200
    assert client.get("/status", headers=bearer(token)).status_code == 200
    assert client.post("/hooks/cron", headers=bearer(token + "x")).status_code == 401
    assert client.get("/status", headers=bearer(token + "x")).status_code == 401
    assert len(fake_host.commands) == 1


def test_a_browser_is_asked_for_basic_credentials_and_then_sees_the_page(closed):
    for path in ("/status", "/status/127.0.0.1"):
        refused = closed.get(path, headers={"Accept": BROWSER})
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == 'Basic realm="prunehook"'
        page = closed.get(path, headers={"Accept": BROWSER} | basic("me", STATUS_TOKEN))
        assert page.status_code == 200
        assert page.content_type.startswith("text/html")


def test_with_a_status_token_only_health_readiness_and_the_api_document_are_open(make_app):
    app = make_app(status_token=STATUS_TOKEN)
    client = app.test_client()
    run_id = client.post("/hooks/cron?wait=1", headers=AUTH).get_json()["run"]["id"]
    values = {"name": "127.0.0.1", "run_id": run_id}
    answered = {}
    for rule in app.url_map.iter_rules():
        if "GET" in (rule.methods or ()) and rule.endpoint != "static":
            path = rule.build(values, append_unknown=False)[1]
            answered[path] = client.get(path).status_code
    assert {path for path, status in answered.items() if status != 401} == OPEN
    assert all(answered[path] == 200 for path in OPEN)


def test_with_a_status_token_the_open_api_document_names_targets_to_readers_alone(closed):
    """Target names are host names: as closed as /status, where a status token closes it."""
    anonymous = closed.get("/openapi.json").get_data(as_text=True)
    assert "127.0.0.1" not in anonymous
    for credentials in (bearer(STATUS_TOKEN), AUTH):
        assert "127.0.0.1" in closed.get("/openapi.json", headers=credentials).get_data(True)


def test_without_a_status_token_status_and_metrics_stay_open_but_tails_need_the_hook_token(
    make_app,
):
    client = make_app().test_client()
    *open_routes, tails, metrics = reading_routes(client)
    open_routes.append(metrics)
    for path in open_routes:
        assert client.get(path).status_code == 200, path
    assert client.get("/status", headers={"Accept": BROWSER}).status_code == 200
    refused = client.get(tails)
    assert refused.status_code == 401
    assert client.get(tails, headers={"Accept": BROWSER}).headers["WWW-Authenticate"] == (
        'Basic realm="prunehook"'
    )
    assert client.get(tails, headers=basic("ops", WRONG)).status_code == 401
    for credentials in (AUTH, basic("ops", TOKEN)):
        assert client.get(tails, headers=credentials).status_code == 200


def test_no_token_reaches_the_log_the_status_or_a_refusal(make_app, caplog):
    client = make_app(status_token=STATUS_TOKEN).test_client()
    shown = []
    with caplog.at_level(logging.DEBUG):
        routes = reading_routes(client)
        for path in routes:
            for credentials in ({}, bearer(WRONG), basic("ops", WRONG), basic("ops", STATUS_TOKEN)):
                answer = client.get(path, headers=credentials)
                shown.append(answer.get_data(as_text=True) + str(answer.headers))
        refused = client.get("/status", headers=basic("ops", WRONG))
    assert refused.status_code == 401
    seen = caplog.text + "".join(shown)
    for secret in (STATUS_TOKEN, TOKEN, WRONG):
        assert secret not in seen
        assert base64.b64encode(f"ops:{secret}".encode()).decode() not in seen


def test_a_status_token_under_16_bytes_refuses_to_start_naming_the_variable(monkeypatch):
    monkeypatch.setenv("PRUNEHOOK_STATUS_TOKEN", "short")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert list(raised.value.errors) == ["PRUNEHOOK_STATUS_TOKEN"]
    assert "short" not in str(raised.value)


def _status_check(**values):
    settings = Settings.from_values(token=TOKEN, **values)
    checks = run_checks(settings, [], "PRUNEHOOK_TOKEN is set", [])
    (check,) = [check for check in checks if check.name == "status"]
    return check


def test_check_warns_that_status_and_metrics_are_open_without_a_status_token():
    check = _status_check()
    assert (check.ok, check.warning) == (True, True)
    assert "PRUNEHOOK_STATUS_TOKEN" in check.fix
    replicas = _status_check(database_url="postgresql://prunehook@db/prunehook")
    assert replicas.warning and "database URL" in replicas.detail
    closed = _status_check(status_token=STATUS_TOKEN)
    assert (closed.ok, closed.warning) == (True, False)
    assert STATUS_TOKEN not in closed.line()
    assert "fix: set PRUNEHOOK_STATUS_TOKEN" in check.line()
