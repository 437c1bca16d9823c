"""How gunicorn runs prunehook: the commands README documents, started for real.

`make run` and the Procfile's command are run as an operator runs them (the
Procfile's 0.0.0.0 becomes 127.0.0.1: tests bind loopback only).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TOKEN
from tests.harness import (
    REPO,
    Gunicorn,
    How,
    operator_environment,
    start_gunicorn,
    wait_for,
)
from tests.harness.gunicorn import REFUSAL_BOUND_S
from tests.test_disk_real import BUILDX_DOCKER
from webhook.store.sqlite import SQLiteStore

COMMANDS = [How.MAKE_RUN.value, How.PROCFILE.value]


def operator_env(tmp_path: Path, **variables: str) -> dict[str, str]:
    """The caller's environment without its PRUNEHOOK_* and gunicorn variables, plus ours."""
    return operator_environment(
        PRUNEHOOK_INSTANCE_PATH=str(tmp_path / "instance"),
        PRUNEHOOK_DB_PATH=str(tmp_path / "state.sqlite3"),
        PRUNEHOOK_TOKEN=TOKEN,
        **variables,
    )


def start(how: str, env: dict[str, str], log: Path) -> Gunicorn:
    return start_gunicorn(env, how=How(how), log_path=log)


@pytest.mark.parametrize("how", sorted(COMMANDS))
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PRUNEHOOK_SSH_PORT", "notaport"),
        ("PRUNEHOOK_SSH_KEY_FILE", "/nonexistent/prunehook"),
    ],
)
def test_a_config_error_without_a_safe_default_stops_gunicorn_naming_the_variable(
    tmp_path, how, variable, value
):
    log = tmp_path / "gunicorn.log"
    served = start(how, operator_env(tmp_path, **{variable: value}), log)
    served.stops_by_itself(f"`{how}` after a bad {variable}")
    assert served.process.returncode != 0
    assert variable in log.read_text()


def refusal(how: str, env: dict[str, str], log: Path) -> str:
    """What gunicorn said, once it stopped within seconds with exit code 2 before binding or
    forking a worker, without a traceback."""
    served = start(how, env, log)
    served.stops_by_itself(f"`{how}` after a configuration error")
    shown = log.read_text()
    assert served.process.returncode == 2, shown
    assert "Listening at" not in shown
    assert "Booting worker" not in shown
    assert "Traceback" not in shown
    return shown


def generated_token_env(tmp_path: Path, **variables: str) -> dict[str, str]:
    """operator_env without PRUNEHOOK_TOKEN: the hooks take the token kept in the instance
    folder."""
    env = operator_env(tmp_path) | variables
    del env["PRUNEHOOK_TOKEN"]
    return env


@pytest.mark.parametrize("how", sorted(COMMANDS))
def test_an_instance_folder_that_cannot_be_made_stops_gunicorn_naming_the_variable(tmp_path, how):
    env = generated_token_env(tmp_path, PRUNEHOOK_INSTANCE_PATH="/proc/nope")

    shown = refusal(how, env, tmp_path / "gunicorn.log")

    assert "PRUNEHOOK_INSTANCE_PATH: the instance folder /proc/nope cannot be made" in shown


@pytest.mark.parametrize("how", sorted(COMMANDS))
def test_a_token_file_others_can_read_stops_gunicorn_naming_the_file_and_the_fix(tmp_path, how):
    instance = tmp_path / "instance"
    instance.mkdir()
    token_file = instance / "hook-token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o644)

    shown = refusal(how, generated_token_env(tmp_path), tmp_path / "gunicorn.log")

    assert f"{token_file}: others can read or write it (mode 0644): chmod 600 it" in shown


@pytest.mark.parametrize("how", sorted(COMMANDS))
@pytest.mark.parametrize(
    ("variable", "value"),
    # WEB_CONCURRENCY=abc stops gunicorn with a traceback before it reads its settings: its
    # own default for --workers is int(WEB_CONCURRENCY), read when gunicorn is imported
    [("GUNICORN_THREADS", "abc"), ("GUNICORN_THREADS", "-1"), ("WEB_CONCURRENCY", "0")],
)
def test_a_worker_or_thread_count_that_is_no_count_stops_gunicorn_naming_the_variable(
    tmp_path, how, variable, value
):
    env = operator_env(tmp_path, **{variable: value})

    shown = refusal(how, env, tmp_path / "gunicorn.log")

    assert f"{variable}: must be a whole number, 1 or more, not {value!r}" in shown


def test_prunehook_serve_refuses_a_worker_count_gunicorn_would_fail_to_read_naming_it(tmp_path):
    # gunicorn reads WEB_CONCURRENCY as it is imported, before its settings file can check it
    env = operator_env(tmp_path, WEB_CONCURRENCY="abc")

    shown = refusal(How.SERVE, env, tmp_path / "serve.log")

    assert "WEB_CONCURRENCY: must be a whole number, 1 or more, not 'abc'" in shown


def test_a_worker_that_cannot_load_the_app_exits_without_a_traceback_from_prunehook(tmp_path):
    log = tmp_path / "gunicorn.log"
    served = start_gunicorn(operator_env(tmp_path), app="wsgi:no_such_app", workers=1, log_path=log)
    served.stops_by_itself("gunicorn after an app it cannot load")
    shown = log.read_text()
    assert served.process.returncode == 4  # gunicorn's APP_LOAD_ERROR
    assert "Failed to find attribute 'no_such_app' in 'wsgi'" in shown
    assert "Exception during worker exit" not in shown
    assert "Traceback" not in shown


def test_gunicorn_timeouts_cover_a_whole_run_with_the_prune_timeout_set_in_dot_env(tmp_path):
    (tmp_path / ".env").write_text(
        "PRUNEHOOK_TIMEOUT_S=600\nPRUNEHOOK_SSH_HOST=build-1.example\nPRUNEHOOK_SSH_KEY=unused\n"
    )
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
    # two stages of 600 s, 8 probes of 30 s, 3 connects of 10 s, 55 s to record; 60 s to exit
    assert effective["graceful_timeout"] == effective["timeout"] == str(1200 + 240 + 30 + 55 + 60)


def test_two_instances_on_one_machine_do_not_share_a_control_socket(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = operator_env(tmp_path, HOME=str(home))
    env.pop("XDG_RUNTIME_DIR", None)
    started = []
    try:
        for name in ("a", "b"):
            served = start("procfile", env, tmp_path / f"{name}.log")
            started.append(served)
            served.wait_until_serving()
        assert not (home / ".gunicorn" / "gunicorn.ctl").exists()
        assert list(home.rglob("*.ctl")) == []
    finally:
        for served in started:
            served.stop()


def test_each_instance_may_ask_for_its_own_control_socket(tmp_path):
    env = operator_env(tmp_path)
    sockets = [tmp_path / "a.ctl", tmp_path / "b.ctl"]
    started = []
    try:
        for path in sockets:
            own = env | {"GUNICORN_CONTROL_SOCKET": str(path)}
            served = start("procfile", own, path.with_suffix(".log"))
            started.append(served)
            served.wait_until_serving()
        # the master opens it from a thread of its own, not before it serves
        wait_for(lambda: all(path.is_socket() for path in sockets), 30, "control sockets")
        assert all(served.process.poll() is None for served in started)
    finally:
        for served in started:
            served.stop()


# the buildx stand-in, each prune taking a while; a file says which stage has begun
SLOW_DOCKER = """#!/bin/sh
here=$(dirname "$0")
case "$*" in
  "builder prune -f --filter"*) touch "$here/stage-1"; sleep 2 ;;
  "builder prune -f --keep-storage"*) touch "$here/stage-2"; sleep 2 ;;
esac
exec python3 "$here/buildx" "$@"
"""


def test_a_graceful_stop_during_a_two_stage_run_lets_it_finish_and_record(
    make_sshd, service_env, serve, tmp_path
):
    folder = tmp_path / "docker"
    folder.mkdir()
    (folder / "buildx").write_text(BUILDX_DOCKER)
    (folder / "state.json").write_text('{"cache": 12000000000}')
    docker = folder / "docker"
    docker.write_text(SLOW_DOCKER)
    for script in (docker, folder / "buildx"):
        script.chmod(0o755)
    host = make_sshd(docker=str(docker))
    env = service_env(host, PRUNEHOOK_MAX_CACHE="5GB", PRUNEHOOK_DOCKER_ROOT=str(tmp_path))
    served = serve(env, workers=1)

    code, body = served.call("/hooks/cron")
    assert (code, body["decision"]) == (202, "started")
    wait_for(lambda: (folder / "stage-1").exists(), 30, "stage 1", served.process)
    os.kill(served.process.pid, signal.SIGTERM)  # the master: a graceful stop
    served.process.wait(60)

    store = SQLiteStore(env["PRUNEHOOK_DB_PATH"])
    try:
        run = store.run(body["run_id"])
    finally:
        store.close()
    assert run is not None
    assert (run.result, run.keep_storage_bytes, run.goal_met) == ("ok", 5_000_000_000, True)
    assert (folder / "stage-2").exists()
