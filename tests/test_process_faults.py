"""A hung daemon, a killed worker, a graceful stop: recorded, reported, never a lost row."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.conftest import AUTH
from tests.harness import wait_for
from webhook import create_app
from webhook.store.sqlite import SQLiteStore


@pytest.fixture
def quick_host(make_sshd, docker_engine):
    """A build host whose guard gives up after 5 s, so a paused dockerd leaves nothing behind."""
    return make_sshd(docker_host=docker_engine.host, guard_timeout=5)


def test_command_hanging_past_the_timeout_is_recorded_as_timeout(
    quick_host, docker_engine, env_for, tmp_path
):
    env_for(quick_host, PRUNEHOOK_TIMEOUT_S="2", PRUNEHOOK_LEASE_GRACE_S="1")
    client = create_app(instance_path=str(tmp_path)).test_client()

    with docker_engine.paused():
        started = time.monotonic()
        run = client.post("/hooks/cron?wait=1", headers=AUTH).get_json()["run"]
        waited = time.monotonic() - started

    assert (run["result"], run["error_kind"]) == ("failed", "timeout")
    assert waited < 15
    shown = client.get("/status").get_json()
    assert shown["last_error_kind"] == "timeout"
    assert shown["last_error"].startswith("timeout")
    assert shown["in_flight"] is None


def test_worker_killed_mid_prune_holds_the_lease_then_the_target_is_claimed_again(
    serve, service_env, quick_host, docker_engine
):
    served = serve(
        # a lease of 12 s: long enough that a loaded machine still asks while it holds
        service_env(quick_host, PRUNEHOOK_TIMEOUT_S="3", PRUNEHOOK_LEASE_GRACE_S="9"),
        workers=2,
    )
    with docker_engine.paused():
        code, body = served.call("/hooks/cron")
        assert (code, body["decision"]) == (202, "started")
        in_flight = served.status()["in_flight"]
        os.kill(in_flight["worker_pid"], signal.SIGKILL)

        code, body = served.call("/hooks/cron")
        assert (code, body["decision"]) == (200, "busy")
        wait_for(lambda: served.status()["in_flight"]["lease_expired"], 60, "the lease's end")

    code, body = served.call("/hooks/cron?wait=1")
    assert (code, body["decision"], body["run"]["result"]) == (200, "started", "ok")
    runs = served.status()["recent_runs"]
    assert [(run["id"], run["result"]) for run in runs] == [(2, "ok"), (1, "lost")]
    assert served.status()["last_result"] == "ok"


def test_graceful_stop_lets_the_running_prune_finish_and_record(
    serve, service_env, quick_host, docker_engine
):
    env = service_env(quick_host, PRUNEHOOK_TIMEOUT_S="30")
    served = serve(env, workers=2)
    with docker_engine.paused(seconds=3):
        assert served.call("/hooks/cron")[1]["decision"] == "started"
        served.process.send_signal(signal.SIGTERM)
        served.process.wait(60)

    assert served.process.returncode == 0
    run = SQLiteStore(env["PRUNEHOOK_DB_PATH"]).recent_runs("127.0.0.1")
    assert [(each.result, each.error_kind) for each in run] == [("ok", None)]
    assert wait_for(lambda: quick_host.commands_run(), 5, "the guard log")


def test_guard_time_limit_kills_a_hung_prune_on_the_host(
    make_sshd, docker_engine, env_for, tmp_path
):
    host = make_sshd(docker_host=docker_engine.host, guard_timeout=1)
    env_for(host, PRUNEHOOK_TIMEOUT_S="60")
    client = create_app(instance_path=str(tmp_path)).test_client()

    with docker_engine.paused():
        run = client.post("/hooks/cron?wait=1", headers=AUTH).get_json()["run"]

    assert (run["result"], run["rc"], run["error_kind"]) == ("failed", 124, "host_timeout")
    assert "time limit" in client.get("/status").get_json()["last_error"]
    assert run["duration_s"] < 30
