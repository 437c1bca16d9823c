"""Every SSH and host fault becomes a recorded error with a kind; nothing raises, nothing hangs.

Faults of a real host run against OpenSSH's sshd; a host that misbehaves in ways sshd never
does (a silent listener, a server that never answers the command request) is a socket or a
paramiko server on loopback, with keys from ssh-keygen: no sshd, no root.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import paramiko
import pytest

from tests.conftest import AUTH
from tests.harness import SSHKeys, free_port, keygen
from webhook import create_app
from webhook.config import Settings
from webhook.core.outcome import Execution, summarize
from webhook.core.targets import Target
from webhook.remote.ssh import TAIL_BYTES, SSHRunner

PRUNE = "docker builder prune -f --filter until=24h"


class HostRunner:
    """The SSH runner bound to one test host's target."""

    def __init__(self, target: Target):
        self.target = target
        self.runner = SSHRunner()

    def run(self, command: str) -> Execution:
        return self.runner.run(self.target, command)


def runner_for(server, **overrides) -> HostRunner:
    values = {
        "ssh_host": "127.0.0.1",
        "ssh_port": server.port,
        "ssh_user": "root",
        "ssh_key_file": str(server.client_key),
        "known_hosts": str(server.known_hosts),
        "connect_timeout_s": 5,
        "timeout_s": 30,
    } | overrides
    target = Settings(**values).env_target
    assert target is not None
    return HostRunner(target)


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


def test_refused_port_is_recorded(ssh_keys):
    execution = runner_for(ssh_keys, ssh_port=free_port()).run(PRUNE)
    assert execution.error_kind == "connect_refused"


def test_listener_that_never_sends_a_banner_times_out(ssh_keys):
    server = ssh_keys
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


def test_docker_rejecting_the_filter_is_recorded_with_its_reason(make_sshd, docker_engine):
    # prunehook refuses such an until at start; a hand-run command shows what Docker says
    server = make_sshd(docker_host=docker_engine.host)
    server.authorize(guarded=False)
    execution = runner_for(server).run("docker builder prune -f --filter until=99999999999h")
    outcome = summarize(execution)
    assert (outcome.ok, outcome.rc, outcome.error_kind) == (False, 1, "docker_error")
    assert '"until" filter expects a duration' in outcome.error


class _AcceptsTheSessionNeverAnswersTheCommand(paramiko.ServerInterface):
    """Logs the client in and opens its session, then holds the exec request unanswered
    (until `release`, so the test ends its own thread)."""

    def __init__(self) -> None:
        self.asked: list[bytes] = []
        self.release = threading.Event()

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_UNKNOWN

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self.asked.append(command)
        self.release.wait(120)
        return False


@pytest.fixture
def mute_host(
    ssh_keys: SSHKeys,
) -> Iterator[tuple[SSHKeys, _AcceptsTheSessionNeverAnswersTheCommand]]:
    """A paramiko SSH server on loopback that never answers the command request."""
    host_key = paramiko.ECDSAKey.generate()
    ssh_keys.trust(f"{host_key.get_name()} {host_key.get_base64()}")
    behaviour = _AcceptsTheSessionNeverAnswersTheCommand()
    listener = socket.create_server(("127.0.0.1", ssh_keys.port))
    transports: list[paramiko.Transport] = []

    def serve() -> None:
        try:
            connection, _ = listener.accept()
        except OSError:
            return  # the test ended without connecting
        transport = paramiko.Transport(connection)
        transports.append(transport)
        transport.add_server_key(host_key)
        transport.start_server(server=behaviour)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield ssh_keys, behaviour
    behaviour.release.set()
    listener.close()
    thread.join(10)
    for transport in transports:
        transport.close()


def test_host_that_never_answers_the_command_request_is_given_up(mute_host):
    keys, behaviour = mute_host
    runner = runner_for(keys, connect_timeout_s=1, timeout_s=30)
    finished: list = []
    prune = threading.Thread(target=lambda: finished.append(runner.run(PRUNE)), daemon=True)

    prune.start()
    prune.join(60)  # a bound for the test itself: before the fix this waited for ever

    assert finished, "the prune thread still waits for an answer to its command request"
    (execution,) = finished
    assert behaviour.asked == [PRUNE.encode()]
    assert (execution.rc, execution.error_kind, execution.logged_in) == (None, "exec_timeout", True)
    assert "did not answer the command within 1s" in execution.error
    assert summarize(execution).error_kind == "exec_timeout"
