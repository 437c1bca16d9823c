"""How gunicorn runs prunehook: the commands README documents, started for real.

`make run` and the Procfile's command are run as an operator runs them (the
Procfile's 0.0.0.0 becomes 127.0.0.1: tests bind loopback only).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import TOKEN
from tests.hosts import REPO, free_port, http_call, wait_for
from tests.payloads import WATCHDOG_ALERT

# a refusal must come within seconds; a master rebooting workers never exits at all
REFUSAL_BOUND_S = 60
VENV_BIN = REPO / ".venv" / "bin"


def procfile_command(port: int) -> list[str]:
    (line,) = [ln for ln in (REPO / "Procfile").read_text().splitlines() if ln.startswith("web:")]
    command = line.removeprefix("web:").strip().replace("0.0.0.0", "127.0.0.1")  # noqa: S104
    return ["sh", "-c", command.replace("$PORT", str(port))]


COMMANDS = {
    "make-run": lambda port: ["make", "-s", "-C", str(REPO), "run", f"PORT={port}"],
    "procfile": procfile_command,
}


def operator_env(tmp_path: Path, **variables: str) -> dict[str, str]:
    """The caller's environment without its PRUNEHOOK_* and gunicorn variables, plus ours."""
    clean = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PRUNEHOOK_", "GUNICORN_", "MAKE")) and name != "MFLAGS"
    }
    return clean | {
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        "PRUNEHOOK_INSTANCE_PATH": str(tmp_path / "instance"),
        "PRUNEHOOK_DB_PATH": str(tmp_path / "state.sqlite3"),
        "PRUNEHOOK_TOKEN": TOKEN,
        **variables,
    }


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as output:
        return subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # make and gunicorn stop together, by this group only
        )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)


def serving(port: int, process: subprocess.Popen) -> None:
    def healthy() -> bool:
        try:
            return http_call(f"http://127.0.0.1:{port}/healthz", None, "GET")[0] == 200
        except OSError:
            return False

    wait_for(healthy, 60, "gunicorn", process)


@pytest.mark.parametrize("how", sorted(COMMANDS))
@pytest.mark.parametrize(
    ("variable", "value"),
    [("PRUNEHOOK_SSH_PORT", "notaport"), ("PRUNEHOOK_SSH_KEY_FILE", "/nonexistent/prunehook")],
)
def test_a_config_error_without_a_safe_default_stops_gunicorn_naming_the_variable(
    tmp_path, how, variable, value
):
    log = tmp_path / "gunicorn.log"
    process = start(COMMANDS[how](free_port()), operator_env(tmp_path, **{variable: value}), log)
    try:
        process.wait(REFUSAL_BOUND_S)
    except subprocess.TimeoutExpired:
        stop(process)
        pytest.fail(f"`{how}` still running {REFUSAL_BOUND_S}s after a bad {variable}")
    assert process.returncode != 0
    assert variable in log.read_text()


def test_gunicorn_timeouts_follow_the_prune_timeout_set_in_dot_env(tmp_path):
    (tmp_path / ".env").write_text("PRUNEHOOK_TIMEOUT_S=600\n")
    env = operator_env(tmp_path, PYTHONPATH=str(REPO))
    config = str(REPO / "gunicorn.conf.py")
    shown = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", config, "--print-config", "wsgi:app"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=REFUSAL_BOUND_S,
        check=True,
    )
    effective = dict(
        (name.strip(), value.strip())
        for name, _, value in (line.partition("=") for line in shown.stdout.splitlines())
    )
    assert effective["graceful_timeout"] == "660"
    assert effective["timeout"] == "660"


def test_two_instances_on_one_machine_do_not_share_a_control_socket(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = operator_env(tmp_path, HOME=str(home))
    env.pop("XDG_RUNTIME_DIR", None)
    started = []
    try:
        for name in ("a", "b"):
            port = free_port()
            process = start(COMMANDS["procfile"](port), env, tmp_path / f"{name}.log")
            started.append(process)
            serving(port, process)
        assert not (home / ".gunicorn" / "gunicorn.ctl").exists()
        assert list(home.rglob("*.ctl")) == []
    finally:
        for process in started:
            stop(process)


def test_each_instance_may_ask_for_its_own_control_socket(tmp_path):
    env = operator_env(tmp_path)
    sockets = [tmp_path / "a.ctl", tmp_path / "b.ctl"]
    started = []
    try:
        for path in sockets:
            port = free_port()
            own = env | {"GUNICORN_CONTROL_SOCKET": str(path)}
            process = start(COMMANDS["procfile"](port), own, path.with_suffix(".log"))
            started.append(process)
            serving(port, process)
        # the master opens it from a thread of its own, not before it serves
        wait_for(lambda: all(path.is_socket() for path in sockets), 30, "control sockets")
        assert all(process.poll() is None for process in started)
    finally:
        for process in started:
            stop(process)


SLOW_HEAD = b"POST /hooks/cron HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"x" * 200


def dribble(port: int, clients: int, rounds: list[int], stop: threading.Event) -> None:
    """`clients` connections sending a request head a byte a second until `stop` (or its end)."""
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(clients)]
    try:
        for offset in range(len(SLOW_HEAD)):
            for connection in sockets:
                connection.sendall(SLOW_HEAD[offset : offset + 1])
            rounds.append(offset)
            if stop.wait(1):
                return
    finally:
        for connection in sockets:
            connection.close()


def test_slow_clients_do_not_hold_back_a_trigger(tmp_path):
    port = free_port()
    # one worker: how the kernel spreads 64 connections over two would decide the outcome
    env = operator_env(tmp_path, WEB_CONCURRENCY="1")
    process = start(COMMANDS["make-run"](port), env, tmp_path / "run.log")
    stop_dribbling, rounds = threading.Event(), []
    slow = threading.Thread(target=dribble, args=(port, 64, rounds, stop_dribbling))
    try:
        serving(port, process)
        slow.start()
        wait_for(lambda: len(rounds) >= 3, 60, "64 slow clients under way")

        code, body = http_call(f"http://127.0.0.1:{port}/hooks/cron", TOKEN)

        # answered while all 64 still hold their connections, not once they gave up
        assert slow.is_alive()
        assert (code, body["decision"]) == (200, "no_target")
    finally:
        stop_dribbling.set()
        slow.join(60)
        stop(process)


def test_a_request_whose_body_arrives_later_on_a_kept_alive_connection_is_served(tmp_path):
    port = free_port()
    process = start(COMMANDS["make-run"](port), operator_env(tmp_path), tmp_path / "run.log")
    alert = json.dumps(WATCHDOG_ALERT).encode()
    head = (
        f"POST /hooks/watchdog HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(alert)}\r\n\r\n"
    ).encode()
    try:
        serving(port, process)
        answers = []
        with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
            for _ in range(2):  # the second on the same connection
                connection.sendall(head + alert[:10])
                time.sleep(0.3)
                connection.sendall(alert[10:])
                response = http.client.HTTPResponse(connection)
                response.begin()
                answers.append((response.status, json.loads(response.read())["decision"]))
                assert not response.will_close
        assert answers == [(200, "no_target")] * 2
    finally:
        stop(process)
