"""The function platforms' entry points (webhook/platforms): functions-framework's own server
and the Lambda handler given the events of a function URL, API Gateway's HTTP API (payload
2.0) and REST API (1.0), each against the real build host (sshd + dockerd) with its state in
PostgreSQL; and both refuse to start without a database URL."""

from __future__ import annotations

import ast
import base64
import importlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs

import pytest

from tests.conftest import TOKEN
from tests.harness import (
    REPO,
    PartMissing,
    SSHServer,
    find_binary,
    free_port,
    http_call,
    in_a_fresh_app,
    operator_environment,
    wait_for,
)
from tests.harness.gunicorn import VENV_BIN
from tests.payloads import WATCHDOG_ALERT
from tests.readme import fenced_blocks, section, variables_read
from webhook.core.signatures import sign

CLOUD_RUN_SOURCE = REPO / "webhook" / "platforms" / "cloud_run.py"
LAMBDA_SOURCE = REPO / "webhook" / "platforms" / "aws_lambda.py"
LAMBDA_MODULE = "webhook.platforms.aws_lambda"
PRUNE = "allowed docker builder prune -f --filter until=24h"
HMAC_KEY = b"platform-signing-key-0123456789ab"
HMAC_SECRET = "whsec_" + base64.b64encode(HMAC_KEY).decode()
NO_DATABASE = "PRUNEHOOK_DATABASE_URL"
DOCS = REPO / "docs" / "functions.md"


def new_prunes(host: SSHServer, before: int) -> list[str]:
    """The prunes the guard saw since it had seen `before` (the build host is the session's)."""
    return host.prunes_run()[before:]


# -- the events AWS sends (the formats of the Lambda and API Gateway developer guides) ------


def _request_time() -> tuple[str, int]:
    now = time.time()
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)), int(now * 1000)


def _body(body: bytes, encoded: bool) -> dict[str, Any]:
    if not body:
        return {"isBase64Encoded": False}
    text = base64.b64encode(body).decode() if encoded else body.decode()
    return {"body": text, "isBase64Encoded": encoded}


def event_v2(
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes = b"",
    query: str = "",
    encoded: bool = True,
    domain: str = "abcdefghij0123456789.lambda-url.eu-west-1.on.aws",
    route: str = "$default",
) -> dict[str, Any]:
    """Payload 2.0: a function URL's event (`domain` *.lambda-url.*), or an HTTP API's
    (*.execute-api.*, `route` such as `ANY /{proxy+}`) on its $default stage. Header names
    come lowercased; repeated ones joined with commas."""
    when, epoch = _request_time()
    lowered = {name.lower(): value for name, value in headers.items()}
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route,
        "rawPath": path,
        "rawQueryString": query,
        "headers": {
            "host": domain,
            "user-agent": "curl/8.5.0",
            "x-amzn-trace-id": "Root=1-6751c0de-0123456789abcdef01234567",
            "x-forwarded-for": "127.0.0.1",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
            "content-length": str(len(body)),
            **lowered,
        },
        "requestContext": {
            "accountId": "anonymous" if "lambda-url" in domain else "123456789012",
            "apiId": domain.split(".")[0],
            "domainName": domain,
            "domainPrefix": domain.split(".")[0],
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "curl/8.5.0",
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": route,
            "stage": "$default",
            "time": when,
            "timeEpoch": epoch,
        },
        **_body(body, encoded),
    }
    if query:
        parsed = parse_qs(query)
        event["queryStringParameters"] = {k: ",".join(v) for k, v in parsed.items()}
    if route != "$default":
        event["pathParameters"] = {"proxy": path.lstrip("/")}
    return event


def event_v1(
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes = b"",
    query: dict[str, list[str]] | None = None,
    encoded: bool = True,
) -> dict[str, Any]:
    """Payload 1.0: a REST API's proxy integration (`/{proxy+}` on stage `prod`). Header
    names keep their case; `path` has no stage, requestContext's has."""
    when, epoch = _request_time()
    domain = "a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com"
    sent = {
        "Host": domain,
        "User-Agent": "curl/8.5.0",
        "X-Amzn-Trace-Id": "Root=1-6751c0de-0123456789abcdef01234567",
        "X-Forwarded-For": "127.0.0.1",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
        **headers,
    }
    return {
        "version": "1.0",
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": sent,
        "multiValueHeaders": {name: [value] for name, value in sent.items()},
        "queryStringParameters": {k: v[-1] for k, v in query.items()} if query else None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": domain.split(".")[0],
            "domainName": domain,
            "domainPrefix": domain.split(".")[0],
            "extendedRequestId": "LgLrPE0ZoAMFu4A=",
            "httpMethod": method,
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "curl/8.5.0"},
            "path": f"/prod{path}",
            "protocol": "HTTP/1.1",
            "requestId": str(uuid.uuid4()),
            "requestTime": when,
            "requestTimeEpoch": epoch,
            "resourceId": "abc123",
            "resourcePath": "/{proxy+}",
            "stage": "prod",
        },
        **_body(body, encoded),
    }


def answer(response: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """A handler's response: its status and its body as JSON (decoded when base64)."""
    body = response.get("body", "")
    raw = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()
    return response["statusCode"], json.loads(raw)


def signed_headers(body: bytes, message_id: str) -> dict[str, str]:
    timestamp = str(int(time.time()))
    signature = sign(HMAC_KEY, message_id, timestamp, body)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": f"v1,{signature}",
    }


# -- the Lambda handler, imported as Lambda does at a cold start ------------------------------


@pytest.fixture
def cold_start(
    monkeypatch, tmp_path, build_host, postgres_database
) -> Iterator[Callable[..., ModuleType]]:
    """Import the handler's module afresh, as a new Lambda instance does, configured for the
    build host and a fresh database as docs/functions.md says (the key and known_hosts as
    text: Lambda's environment or Secrets Manager holds them, no file can be mounted), with
    `more` variables. Its app's runs and connections end before the database goes."""
    loaded: list[ModuleType] = []
    monkeypatch.chdir(tmp_path)  # no stray .env

    def start(**more: str) -> ModuleType:
        variables = {
            "PRUNEHOOK_SSH_HOST": build_host.address,
            "PRUNEHOOK_SSH_PORT": str(build_host.port),
            "PRUNEHOOK_SSH_USER": "root",
            "PRUNEHOOK_SSH_KEY": build_host.client_key.read_text(),
            "PRUNEHOOK_SSH_KNOWN_HOSTS_TEXT": build_host.known_hosts.read_text(),
            "PRUNEHOOK_DOCKER_ROOT": str(build_host.docker_root),
            "PRUNEHOOK_TOKEN": TOKEN,
            "PRUNEHOOK_DATABASE_URL": postgres_database,
        } | more
        for name in [n for n in os.environ if n.startswith("PRUNEHOOK_") or n == "DATABASE_URL"]:
            monkeypatch.delenv(name)
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        sys.modules.pop(LAMBDA_MODULE, None)
        try:
            module = importlib.import_module(LAMBDA_MODULE)
        except ModuleNotFoundError as error:
            if error.name != "apig_wsgi":
                raise
            raise PartMissing("apig-wsgi (the aws extra) is not installed") from error
        loaded.append(module)
        return module

    yield start
    sys.modules.pop(LAMBDA_MODULE, None)
    for module in loaded:
        hook = module.app.extensions["prunehook"]
        hook.join_all(30)
        hook.service.store.close()
    # what the cold start itself set, which monkeypatch does not know of
    os.environ.pop("PRUNEHOOK_WAIT_FOR_RUN", None)
    written = os.environ.pop("PRUNEHOOK_SSH_KNOWN_HOSTS", None)
    if written:
        Path(written).unlink(missing_ok=True)


def test_a_function_url_cron_ping_prunes_the_real_host_before_the_handler_returns(
    cold_start, build_host, capfd
):
    lam = cold_start()
    before = len(build_host.prunes_run())

    event = event_v2("POST", "/hooks/cron", {"authorization": f"Bearer {TOKEN}"})
    status, body = answer(lam.handler(event, None))

    assert (status, body["decision"]) == (200, "started"), body
    assert (body["run"]["result"], body["run"]["reclaimed"]) == ("ok", "0B")
    assert new_prunes(build_host, before) == [PRUNE]
    # the host key came from the variable, through a file only this user may read
    known_hosts = Path(os.environ["PRUNEHOOK_SSH_KNOWN_HOSTS"])
    assert known_hosts.read_text() == build_host.known_hosts.read_text()
    assert stat.S_IMODE(known_hosts.stat().st_mode) == 0o600
    logged = capfd.readouterr()
    key_line = build_host.client_key.read_text().splitlines()[1]
    assert key_line not in logged.out + logged.err
    # EventBridge Scheduler's ping, as docs/functions.md has it: inside the interval now
    docs = section("docs/functions.md", "The cron ping: EventBridge Scheduler")
    (event,) = [block for block in fenced_blocks(docs) if block.startswith("{")]
    scheduled = json.loads(event)
    scheduled["headers"]["authorization"] = f"Bearer {TOKEN}"
    status, body = answer(lam.handler(scheduled, None))
    assert (status, body["decision"]) == (200, "skipped"), body
    assert new_prunes(build_host, before) == [PRUNE]


def test_an_http_api_event_with_a_base64_body_reaches_the_watchdog_hook(cold_start, build_host):
    lam = cold_start()
    before = len(build_host.prunes_run())
    alert = json.dumps(WATCHDOG_ALERT | {"status": "firing"}).encode()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    domain = "a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com"

    event = event_v2(
        "POST", "/hooks/watchdog", headers, alert, domain=domain, route="ANY /{proxy+}"
    )
    status, body = answer(lam.handler(event, None))

    assert (status, body["decision"], body["run"]["result"]) == (200, "started", "ok"), body
    assert new_prunes(build_host, before) == [PRUNE]
    status_event = event_v2("GET", "/status", headers, query="", domain=domain)
    status, shown = answer(lam.handler(status_event, None))
    assert (status, shown["last_run_ts"] is not None, shown["in_flight"]) == (200, True, None)
    assert shown["warnings"] == []  # the known_hosts text was read, as a platform's is


def test_a_rest_api_event_signed_over_its_raw_body_is_accepted_after_base64_decoding(
    cold_start, build_host
):
    lam = cold_start(PRUNEHOOK_HMAC_SECRET=HMAC_SECRET)
    # bytes that are no UTF-8 round trip: only the decoded raw body verifies
    alert = json.dumps(WATCHDOG_ALERT, ensure_ascii=False).replace("build-1", "büild-1").encode()
    headers = signed_headers(alert, "msg_platform_1") | {"Content-Type": "application/json"}

    tampered = event_v1("POST", "/hooks/watchdog", headers, alert.replace(b"97.2", b"97.3"))
    assert answer(lam.handler(tampered, None))[0] == 401
    signed = event_v1("POST", "/hooks/watchdog", headers, alert, query={"wait": ["1"]})
    status, body = answer(lam.handler(signed, None))

    assert (status, body["decision"]) == (200, "started"), body
    assert body["run"]["result"] == "ok"


def test_without_a_database_url_the_entry_points_refuse_at_cold_start_naming_it(tmp_path):
    find_binary(str(VENV_BIN / "functions-framework"))  # the gcp extra
    variables = {"PRUNEHOOK_TOKEN": TOKEN, "PRUNEHOOK_SSH_HOST": "127.0.0.1"}
    env = platform_environment(PRUNEHOOK_INSTANCE_PATH=str(tmp_path / "instance"), **variables)
    starts = {
        "aws": [sys.executable, "-c", f"import {LAMBDA_MODULE}"],
        "gcp": [*functions_framework(free_port())],
    }
    for extra, command in starts.items():
        done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode != 0, (extra, done.stdout, done.stderr)
        assert f"{NO_DATABASE}: " in done.stderr, (extra, done.stderr)
    assert not (tmp_path / "instance").exists()  # nothing was written before refusing


@pytest.mark.parametrize("value", ["off", "N"])
def test_wait_for_run_set_false_in_any_spelling_is_warned_as_ignored(tmp_path, value):
    env = platform_environment(PRUNEHOOK_WAIT_FOR_RUN=value)
    done = subprocess.run(
        [sys.executable, "-c", f"import {LAMBDA_MODULE}"],
        env=env, cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    ignored = f"PRUNEHOOK_WAIT_FOR_RUN={value} is ignored on AWS Lambda: runs finish inside"
    assert ignored in done.stderr, done.stderr


def test_known_hosts_text_and_a_known_hosts_file_in_dotenv_refuse_naming_where(tmp_path):
    """A .env copied from .env.example names the known_hosts file; with the text as well,
    the cold start says which one to drop and where the other was set."""
    (tmp_path / ".env").write_text("PRUNEHOOK_SSH_KNOWN_HOSTS=~/.ssh/known_hosts\n")
    env = platform_environment(PRUNEHOOK_SSH_KNOWN_HOSTS_TEXT="127.0.0.1 ssh-ed25519 AAAA")
    done = subprocess.run(
        [sys.executable, "-c", f"import {LAMBDA_MODULE}"],
        env=env, cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode != 0
    assert "PRUNEHOOK_SSH_KNOWN_HOSTS_TEXT: set either" in done.stderr, done.stderr
    assert "(set in .env)" in done.stderr


# -- functions-framework's own server -----------------------------------------------------------


def platform_environment(**variables: str) -> dict[str, str]:
    """A new instance's environment: the operator's without prunehook's variables (nor the
    platforms' DATABASE_URL), plus `variables`; this checkout's webhook package first."""
    env = operator_environment(PYTHONPATH=str(REPO), **variables)
    env.pop("DATABASE_URL", None)
    return env


def functions_framework(port: int) -> list[str]:
    """The command that serves the function as Cloud Run functions does (gunicorn inside)."""
    binary = find_binary(str(VENV_BIN / "functions-framework"))
    source = str(CLOUD_RUN_SOURCE)
    address = ["--host", "127.0.0.1", "--port", str(port)]
    return [binary, "--target", "prunehook", "--source", source, *address]


@pytest.fixture
def functions_server(tmp_path, postgres_database) -> Iterator[Callable[[dict[str, str]], str]]:
    """functions-framework serving the function on a loopback port: its base URL. It stops
    before the database goes, at once (SIGQUIT, gunicorn's quick shutdown): a test that
    leaves a run behind has failed already."""
    started: list[subprocess.Popen] = []

    def start(variables: dict[str, str]) -> str:
        port = free_port()
        log = tmp_path / f"functions-framework-{port}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                functions_framework(port),
                env=platform_environment(**variables),
                cwd=tmp_path,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        started.append(process)
        base = f"http://127.0.0.1:{port}"

        def serving() -> bool:
            try:
                return http_call(f"{base}/healthz", None, method="GET")[0] == 200
            except OSError:
                return False

        wait_for(serving, 30, f"functions-framework (log: {log})", process)
        return base

    yield start
    for process in started:
        process.send_signal(signal.SIGQUIT)
        process.wait(10)


def test_functions_framework_serves_the_hooks_and_answers_each_with_its_finished_run(
    functions_server, build_host, postgres_database
):
    # the key and known_hosts as files: Secret Manager's secrets mounted as a volume
    base = functions_server(
        build_host.env() | {"PRUNEHOOK_TOKEN": TOKEN, "PRUNEHOOK_DATABASE_URL": postgres_database}
    )
    before = len(build_host.prunes_run())

    status, cron = http_call(f"{base}/hooks/cron", TOKEN)  # no ?wait=1: the platform waits

    assert (status, cron["decision"], cron["run"]["result"]) == (200, "started", "ok"), cron
    assert new_prunes(build_host, before) == [PRUNE]
    status, alert = http_call(f"{base}/hooks/watchdog", TOKEN, body=WATCHDOG_ALERT)
    assert (status, alert["decision"]) == (200, "skipped"), alert  # within the interval
    status, shown = http_call(f"{base}/status", TOKEN, method="GET")
    assert (status, shown["last_reclaimed"], shown["in_flight"]) == (200, "0B", None), shown
    assert shown["last_run_ts"] is not None
    assert new_prunes(build_host, before) == [PRUNE]


# -- what a server loads, and what the docs name ---------------------------------------------


def test_a_server_never_loads_the_platforms_entry_points_or_their_libraries(tmp_path):
    modules = ("webhook.platforms", "apig_wsgi", "functions_framework")
    then = f"print(sorted(m for m in {modules!r} if m in sys.modules))"
    assert in_a_fresh_app(tmp_path, then) == "[]"


def top_level_names(path: Path) -> set[str]:
    """The functions and variables a module defines, read without importing it (an entry
    point's import is a cold start)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {target.id for target in node.targets if isinstance(target, ast.Name)}
    return names


def test_the_functions_page_names_the_real_entry_points_and_only_variables_prunehook_reads():
    text = DOCS.read_text()
    assert "--entry-point prunehook" in text
    assert "--handler webhook.platforms.aws_lambda.handler" in text
    assert "--target prunehook --source webhook/platforms/cloud_run.py" in text
    defined = {path.stem: top_level_names(path) for path in (CLOUD_RUN_SOURCE, LAMBDA_SOURCE)}
    assert "prunehook" in defined["cloud_run"]
    assert "handler" in defined["aws_lambda"]
    named = set(re.findall(r"\b(PRUNEHOOK_[A-Z0-9_]+)", text)) - {"PRUNEHOOK_TOKEN_VALUE"}
    assert named
    assert sorted(named - variables_read()) == []
