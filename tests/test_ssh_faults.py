"""Every SSH and host fault becomes a recorded error with a kind; nothing raises, nothing hangs.

Faults of a real host run against OpenSSH's sshd; a host that misbehaves in ways sshd never
does (a silent listener, a server that never answers the command request) is a socket or a
paramiko server on loopback, with keys from ssh-keygen: no sshd, no root.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator

import paramiko
import pytest

from tests.conftest import AUTH
from tests.harness import (
    ResettingRelay,
    SSHKeys,
    find_binary,
    free_port,
    keygen,
    known_hosts_line,
    target_at,
    wait_for,
)
from tests.harness.ssh import loopback
from webhook import create_app
from webhook.core.outcome import Execution, summarize
from webhook.core.targets import Target
from webhook.remote.ssh import TAIL_BYTES, KnownHosts, SSHRunner

PRUNE = "docker builder prune -f --filter until=24h"


class HostRunner:
    """The SSH runner bound to one test host's target."""

    def __init__(self, target: Target):
        self.target = target
        self.runner = SSHRunner()

    def execute(self, command: str) -> Execution:
        return self.runner.execute(self.target, command)


def runner_for(server, **overrides) -> HostRunner:
    return HostRunner(target_at(server, **overrides))


def test_unknown_host_key_is_refused_never_accepted(make_sshd):
    server = make_sshd()
    server.known_hosts.write_text("")
    execution = runner_for(server).execute(PRUNE)
    assert execution.error_kind == "host_key_unknown"
    assert "not found in known_hosts" in execution.error
    assert server.commands_run() == []
    assert server.known_hosts.read_text() == ""


def test_changed_host_key_is_refused(make_sshd, tmp_path):
    server = make_sshd()
    server.known_hosts.write_text(server.known_hosts_line(keygen(tmp_path / "impostor")))
    execution = runner_for(server).execute(PRUNE)
    assert execution.error_kind == "host_key_changed"
    assert server.commands_run() == []


def test_a_known_hosts_file_changed_between_connections_is_read_again(make_sshd, tmp_path):
    server = make_sshd()
    trusted = server.known_hosts.read_text()
    runner = runner_for(server)
    assert runner.execute(PRUNE).error_kind is None
    server.known_hosts.write_text(server.known_hosts_line(keygen(tmp_path / "impostor")))
    assert runner.execute(PRUNE).error_kind == "host_key_changed"
    server.known_hosts.write_text("")
    assert runner.execute(PRUNE).error_kind == "host_key_unknown"
    server.known_hosts.write_text(trusted)
    assert runner.execute(PRUNE).error_kind is None
    assert len(server.commands_run()) == 2


def test_an_unreadable_known_hosts_line_is_passed_over_for_the_other_hosts(make_sshd):
    """A line whose key is not base64 (a bad paste) costs only its own host."""
    server = make_sshd()
    trusted = server.known_hosts.read_text()
    server.known_hosts.write_text(f"[127.0.0.1]:1 ssh-ed25519 not*base64\n{trusted}")
    assert runner_for(server).execute(PRUNE).error_kind is None
    assert len(server.commands_run()) == 1


def test_a_hashed_known_hosts_entry_is_trusted_and_only_for_its_host(make_sshd):
    other_address = loopback(200)
    server = make_sshd(also_on=[other_address])  # the same key under another name
    lines = server.known_hosts.read_text().splitlines(keepends=True)
    server.known_hosts.write_text("".join(line for line in lines if other_address not in line))
    hash_it = find_binary("ssh-keygen")
    subprocess.run([hash_it, "-H", "-f", str(server.known_hosts)], check=True, capture_output=True)
    assert server.known_hosts.read_text().startswith("|1|")
    assert runner_for(server).execute(PRUNE).error_kind is None
    other = runner_for(server, ssh_host=other_address)
    assert other.execute(PRUNE).error_kind == "host_key_unknown"
    assert len(server.commands_run()) == 1


def test_a_fleets_known_hosts_file_is_parsed_once_for_many_connections(
    ssh_keys, tmp_path, monkeypatch
):
    path = tmp_path / "fleet_known_hosts"
    key = paramiko.Ed25519Key.from_path(str(keygen(tmp_path / "host")))
    path.write_text(
        "".join(
            f"[127.1.0.{n % 250}]:{2200 + n} ssh-ed25519 {key.get_base64()}\n" for n in range(300)
        )
    )
    parsed = []
    from_line = paramiko.hostkeys.HostKeyEntry.from_line

    def counted(line, lineno=None):
        parsed.append(lineno)
        return from_line(line, lineno)

    monkeypatch.setattr(paramiko.hostkeys.HostKeyEntry, "from_line", counted)
    known = KnownHosts()
    for n in range(20):
        client = paramiko.SSHClient()
        known.trust(client, str(path), f"[127.1.0.{n}]:{2200 + n}")
        assert client.get_host_keys().lookup(f"[127.1.0.{n}]:{2200 + n}") is not None
        assert client.get_host_keys().lookup(f"[127.1.0.{n}]:{2201 + n}") is None
    assert len(parsed) == 300  # once, not once a connection


def test_key_not_authorized_is_an_auth_failure(make_sshd):
    server = make_sshd()
    execution = runner_for(server, ssh_key_file=str(server.stranger_key)).execute(PRUNE)
    assert execution.error_kind == "auth_failed"
    assert server.commands_run() == []


def test_refused_port_is_recorded(ssh_keys):
    execution = runner_for(ssh_keys, ssh_port=free_port()).execute(PRUNE)
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
        execution = runner_for(server, ssh_port=port, ssh_connect_timeout_s=1).execute(PRUNE)
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
        ssh_known_hosts=str(server.known_hosts),
    )
    client = create_app(settings, instance_path=str(tmp_path)).test_client()
    run = client.post("/hooks/cron?wait=1", headers=AUTH).get_json()["run"]
    assert (run["result"], run["error_kind"]) == ("failed", "docker_unavailable")
    shown = client.get("/status").get_json()
    assert "Cannot connect to the Docker daemon" in shown["last_error"]
    assert shown["last_error_kind"] == "docker_unavailable"
    assert server.prunes_run() == [f"allowed {PRUNE}"]
    # the probes failed before it too (no /var/lib/docker here, no daemon): noted, and the
    # run went on to the prune
    notes = run["notes"]
    assert notes[0].endswith("/var/lib/docker: No such file or directory")
    assert notes[1].startswith("cache before: rc=1: Cannot connect to the Docker daemon")


def test_large_output_on_both_streams_is_drained_and_only_tails_kept(make_sshd):
    server = make_sshd()
    server.authorize(guarded=False)
    five_mb = "head -c 5000000 /dev/zero | tr '\\0' x"
    execution = runner_for(server).execute(f"{five_mb}; {five_mb} >&2; echo; echo done")
    assert (execution.rc, execution.error_kind) == (0, None)
    assert execution.stdout_tail.endswith("done\n")
    assert len(execution.stdout_tail) <= TAIL_BYTES
    assert len(execution.stderr_tail) == TAIL_BYTES


def test_command_hanging_past_the_timeout_is_given_up(make_sshd):
    server = make_sshd()
    server.authorize(guarded=False)
    execution = runner_for(server, timeout_s=1).execute("sleep 30")
    assert execution.error_kind == "timeout"
    assert execution.error.startswith("timeout")
    assert execution.duration_s < 10


def test_docker_rejecting_the_filter_is_recorded_with_its_reason(make_sshd, docker_engine):
    # prunehook refuses such an until at start; a hand-run command shows what Docker says
    server = make_sshd(docker_host=docker_engine.host)
    server.authorize(guarded=False)
    execution = runner_for(server).execute("docker builder prune -f --filter until=99999999999h")
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


class _ResetsTheConnectionAtTheCommandRequest(_AcceptsTheSessionNeverAnswersTheCommand):
    """Logs the client in and opens its session, then answers the exec request with a TCP
    reset (RST): the client reads ECONNRESET while it waits for the answer."""

    connection: socket.socket

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self.asked.append(command)
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()  # this thread is the only one that reads it: the RST goes out
        return False


@pytest.fixture
def paramiko_host(
    ssh_keys: SSHKeys,
) -> Iterator[Callable[[_AcceptsTheSessionNeverAnswersTheCommand], SSHKeys]]:
    """A paramiko SSH server on loopback, for one connection, behaving as it is told."""
    host_key = paramiko.ECDSAKey.generate()
    ssh_keys.trust(f"{host_key.get_name()} {host_key.get_base64()}")
    listener = socket.create_server(("127.0.0.1", ssh_keys.port))
    transports: list[paramiko.Transport] = []
    behaviours: list[_AcceptsTheSessionNeverAnswersTheCommand] = []
    threads: list[threading.Thread] = []

    def serve(behaviour: _AcceptsTheSessionNeverAnswersTheCommand) -> None:
        try:
            connection, _ = listener.accept()
        except OSError:
            return  # the test ended without connecting
        behaviour.connection = connection
        transport = paramiko.Transport(connection)
        transports.append(transport)
        transport.add_server_key(host_key)
        transport.start_server(server=behaviour)

    def start(behaviour: _AcceptsTheSessionNeverAnswersTheCommand) -> SSHKeys:
        behaviours.append(behaviour)
        threads.append(threading.Thread(target=serve, args=(behaviour,), daemon=True))
        threads[-1].start()
        return ssh_keys

    yield start
    for behaviour in behaviours:
        behaviour.release.set()
    listener.close()
    for thread in threads:
        thread.join(10)
    for transport in transports:
        transport.close()


@pytest.fixture
def mute_host(paramiko_host) -> tuple[SSHKeys, _AcceptsTheSessionNeverAnswersTheCommand]:
    """A paramiko SSH server on loopback that never answers the command request."""
    behaviour = _AcceptsTheSessionNeverAnswersTheCommand()
    return paramiko_host(behaviour), behaviour


def test_host_that_never_answers_the_command_request_is_given_up(mute_host):
    keys, behaviour = mute_host
    runner = runner_for(keys, ssh_connect_timeout_s=1, timeout_s=30)
    finished: list = []
    prune = threading.Thread(target=lambda: finished.append(runner.execute(PRUNE)), daemon=True)

    prune.start()
    prune.join(60)  # a bound for the test itself: before the fix this waited for ever

    assert finished, "the prune thread still waits for an answer to its command request"
    (execution,) = finished
    assert behaviour.asked == [PRUNE.encode()]
    assert (execution.rc, execution.error_kind, execution.logged_in) == (None, "exec_timeout", True)
    assert "did not answer the command within 1s" in execution.error
    assert summarize(execution).error_kind == "exec_timeout"


def started(runner: HostRunner, command: str) -> tuple[threading.Thread, list[Execution]]:
    """`command` running in a thread of its own, as the service's prune thread runs it."""
    finished: list[Execution] = []
    thread = threading.Thread(target=lambda: finished.append(runner.execute(command)), daemon=True)
    thread.start()
    return thread, finished


def test_sshd_killed_mid_command_is_a_lost_connection_not_an_exit_status(make_sshd, tmp_path):
    # paramiko closes the channel without an exit status (rc -1): it was recorded as the
    # command's own failure, exit_status rc=-1, as if the prune had run and failed
    server = make_sshd()
    server.authorize(guarded=False)
    began = tmp_path / "began"
    prune, finished = started(runner_for(server), f"touch {began}; sleep 30")
    wait_for(began.exists, 10, "the command to start")

    assert server.drop_sessions()
    prune.join(20)

    (execution,) = finished
    assert (execution.rc, execution.error_kind, execution.logged_in) == (None, "ssh_error", True)
    assert "connection was lost before the command finished" in execution.error
    assert execution.duration_s < 15
    assert summarize(execution).error_kind == "ssh_error"


def test_connection_reset_mid_command_is_an_ssh_error(make_sshd, tmp_path):
    server = make_sshd()
    server.authorize(guarded=False)
    relay = ResettingRelay(server.port)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(
        known_hosts_line(relay.port, server.host_key.with_suffix(".pub").read_text())
    )
    runner = runner_for(server, ssh_port=relay.port, ssh_known_hosts=str(known_hosts))
    pid = tmp_path / "command.pid"
    try:
        prune, finished = started(runner, f"echo $$ > {pid}.new; mv {pid}.new {pid}; exec sleep 30")
        wait_for(pid.exists, 10, "the command to start")
        relay.reset()
        prune.join(20)
    finally:
        relay.close()
        if pid.exists():  # the command outlives its session (nothing signals it)
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid.read_text()), signal.SIGKILL)

    (execution,) = finished
    assert (execution.rc, execution.error_kind, execution.logged_in) == (None, "ssh_error", True)
    assert "ConnectionResetError" in execution.error
    assert execution.duration_s < 15


def test_connection_reset_at_the_command_request_is_an_ssh_error(paramiko_host):
    behaviour = _ResetsTheConnectionAtTheCommandRequest()
    runner = runner_for(paramiko_host(behaviour), ssh_connect_timeout_s=5)
    prune, finished = started(runner, PRUNE)
    prune.join(30)

    (execution,) = finished
    assert behaviour.asked == [PRUNE.encode()]
    assert (execution.rc, execution.error_kind, execution.logged_in) == (None, "ssh_error", True)
    assert "ConnectionResetError" in execution.error


def test_host_closing_the_connection_during_the_handshake_is_a_connect_error(ssh_keys):
    # paramiko re-raises the EOFError its transport thread saw; it escaped the runner
    listener = socket.create_server(("127.0.0.1", ssh_keys.port))

    def banner_then_close() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
            connection.shutdown(socket.SHUT_WR)  # a clean close (FIN), not a reset
            connection.settimeout(10)
            while connection.recv(65536):
                pass

    server = threading.Thread(target=banner_then_close, daemon=True)
    server.start()
    try:
        prune, finished = started(runner_for(ssh_keys), PRUNE)
        prune.join(30)
    finally:
        listener.close()
        server.join(10)

    assert finished, "the runner raised instead of returning an Execution"
    (execution,) = finished
    assert (execution.rc, execution.error_kind, execution.logged_in) == (
        None,
        "connect_error",
        False,
    )
    assert "closed the connection" in execution.error


def test_a_command_killed_by_a_signal_is_its_own_failure_not_a_lost_connection(make_sshd):
    # sshd reports exit-signal, not exit-status: rc -1 on a connection that is still up
    server = make_sshd()
    server.authorize(guarded=False)
    execution = runner_for(server).execute("echo started; kill -9 $$")
    assert (execution.rc, execution.error_kind, execution.stdout_tail) == (-1, None, "started\n")
    assert summarize(execution).error_kind == "exit_status"


@pytest.mark.parametrize("host", ["build..example", "a" * 300])
def test_a_host_name_that_cannot_be_encoded_is_a_connect_error(ssh_keys, host):
    # the IDNA codec raised UnicodeError out of the runner
    execution = runner_for(ssh_keys, ssh_host=host).execute(PRUNE)
    assert (execution.error_kind, execution.logged_in) == ("connect_error", False)
    assert "UnicodeError" in execution.error
