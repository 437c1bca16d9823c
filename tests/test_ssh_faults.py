"""Every SSH and host fault becomes a recorded error with a kind; nothing raises, nothing hangs."""

from __future__ import annotations

import socket
import threading

import pytest

from tests.conftest import AUTH
from tests.hosts import free_port, keygen
from webhook import create_app
from webhook.config import Settings
from webhook.outcome import summarize
from webhook.ssh import TAIL_BYTES, SSHRunner

pytestmark = pytest.mark.sshd
PRUNE = "docker builder prune -f --filter until=24h"


def runner_for(server, **overrides) -> SSHRunner:
    values = {
        "ssh_host": "127.0.0.1",
        "ssh_port": server.port,
        "ssh_user": "root",
        "ssh_key_file": str(server.client_key),
        "known_hosts": str(server.known_hosts),
        "connect_timeout_s": 5,
        "timeout_s": 30,
    } | overrides
    return SSHRunner(Settings(**values))


def test_unknown_host_key_is_refused_never_accepted(make_sshd):
    server = make_sshd()
    server.known_hosts.write_text("")
    execution = runner_for(server).run(PRUNE)
    assert execution.error_kind == "host_key_unknown"
    assert "not found in known_hosts" in execution.error
    assert server.commands_run() == []
    assert server.known_hosts.read_text() == ""


def test_changed_host_key_is_refused(make_sshd, tmp_path):
    server = make_sshd()
    server.known_hosts.write_text(server.known_hosts_line(keygen(tmp_path / "impostor")))
    execution = runner_for(server).run(PRUNE)
    assert execution.error_kind == "host_key_changed"
    assert server.commands_run() == []


def test_key_not_authorized_is_an_auth_failure(make_sshd):
    server = make_sshd()
    execution = runner_for(server, ssh_key_file=str(server.stranger_key)).run(PRUNE)
    assert execution.error_kind == "auth_failed"
    assert server.commands_run() == []


def test_refused_port_is_recorded(make_sshd):
    server = make_sshd()
    execution = runner_for(server, ssh_port=free_port()).run(PRUNE)
    assert execution.error_kind == "connect_refused"


def test_listener_that_never_sends_a_banner_times_out(make_sshd):
    server = make_sshd()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(silent.accept()[0]), daemon=True).start()
    try:
        port = silent.getsockname()[1]
        execution = runner_for(server, ssh_port=port, connect_timeout_s=1).run(PRUNE)
    finally:
        for connection in accepted:
            connection.close()
        silent.close()
    assert execution.error_kind == "banner_timeout", execution
    assert execution.duration_s < 10


def test_docker_daemon_down_is_recorded_with_its_message(make_sshd, make_settings, tmp_path):
    server = make_sshd(docker_host="unix:///nonexistent/docker.sock")
    settings = make_settings(
        ssh_port=server.port,
        ssh_user="root",
        ssh_key="",
        ssh_key_file=str(server.client_key),
        known_hosts=str(server.known_hosts),
    )
    client = create_app(settings, instance_path=str(tmp_path)).test_client()
    run = client.post("/hooks/cron?wait=1", headers=AUTH).get_json()["run"]
    assert (run["result"], run["error_kind"]) == ("failed", "docker_unavailable")
    shown = client.get("/status").get_json()
    assert "Cannot connect to the Docker daemon" in shown["last_error"]
    assert shown["last_error_kind"] == "docker_unavailable"
    assert server.commands_run() == [f"allowed {PRUNE}"]


def test_large_output_on_both_streams_is_drained_and_only_tails_kept(make_sshd):
    server = make_sshd()
    server.authorize(guarded=False)
    five_mb = "head -c 5000000 /dev/zero | tr '\\0' x"
    execution = runner_for(server).run(f"{five_mb}; {five_mb} >&2; echo; echo done")
    assert (execution.rc, execution.error_kind) == (0, None)
    assert execution.stdout_tail.endswith("done\n")
    assert len(execution.stdout_tail) <= TAIL_BYTES
    assert len(execution.stderr_tail) == TAIL_BYTES


def test_command_hanging_past_the_timeout_is_given_up(make_sshd):
    server = make_sshd()
    server.authorize(guarded=False)
    execution = runner_for(server, timeout_s=1).run("sleep 30")
    assert execution.error_kind == "timeout"
    assert execution.error.startswith("timeout")
    assert execution.duration_s < 10


@pytest.mark.dockerd
def test_docker_rejecting_the_filter_is_recorded_with_its_reason(make_sshd, docker_engine):
    # prunehook refuses such an until at start; a hand-run command shows what Docker says
    server = make_sshd(docker_host=docker_engine.host)
    server.authorize(guarded=False)
    execution = runner_for(server).run("docker builder prune -f --filter until=99999999999h")
    outcome = summarize(execution)
    assert (outcome.ok, outcome.rc, outcome.error_kind) == (False, 1, "docker_error")
    assert '"until" filter expects a duration' in outcome.error
