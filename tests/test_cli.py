"""The operator's commands: check (preflight), prune --dry-run, --help on each."""

from __future__ import annotations

import socket

import pytest

from webhook import create_app


def cli(tmp_path):
    return create_app(instance_path=str(tmp_path / "instance")).test_cli_runner()


def test_check_passes_against_a_guarded_build_host(make_sshd, env_for, tmp_path):
    host = make_sshd()
    env_for(host)
    result = cli(tmp_path).invoke(args=["check"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for name in ("config", "token", "database", "target", "key", "host key", "ssh login", "docker"):
        assert any(line.startswith(f"PASS  {name}") for line in lines), name
    assert "pinned to prunehook-guard" in result.output
    assert host.commands_run() == ["denied docker version --format '{{.Server.Version}}'"]


def test_check_reads_the_docker_version_when_the_key_may(
    make_sshd, docker_engine, env_for, tmp_path
):
    host = make_sshd(docker_host=docker_engine.host)
    host.authorize(guarded=False)
    env_for(host)
    result = cli(tmp_path).invoke(args=["check"])
    assert result.exit_code == 0, result.output
    assert "PASS  docker       Docker 20." in result.output


def test_check_fails_with_a_fix_when_the_host_key_is_unknown(make_sshd, env_for, tmp_path):
    host = make_sshd()
    host.known_hosts.write_text("")
    env_for(host)
    result = cli(tmp_path).invoke(args=["check"])
    assert result.exit_code == 1
    assert "FAIL  host key" in result.output
    assert f"fix: ssh-keyscan -p {host.port} 127.0.0.1" in result.output
    assert host.commands_run() == []


def test_check_fails_when_the_key_is_not_authorized(make_sshd, env_for, tmp_path):
    host = make_sshd()
    env_for(host, PRUNEHOOK_SSH_KEY_FILE=str(host.stranger_key))
    result = cli(tmp_path).invoke(args=["check"])
    assert result.exit_code == 1
    assert "FAIL  ssh login    auth_failed" in result.output


def test_check_without_a_target_says_what_to_set(env_for, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    result = cli(tmp_path).invoke(args=["check"])
    assert result.exit_code == 1
    assert "FAIL  target" in result.output
    assert "PRUNEHOOK_SSH_HOST" in result.output
    assert "PASS  token        generated" in result.output


def test_check_shows_each_configuration_fallback_as_a_warning(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PRUNEHOOK_UNTIL", "garbage")
    result = cli(tmp_path).invoke(args=["check"])
    assert "PASS  config       valid, 1 warning(s)" in result.output
    assert "PASS  config       warning: PRUNEHOOK_UNTIL: 'garbage' is not a duration" in (
        result.output
    )
    assert "using 24h" in result.output


def test_dry_run_prints_the_exact_command_and_runs_nothing(ssh_keys, env_for, tmp_path):
    env_for(ssh_keys, PRUNEHOOK_UNTIL="7d", PRUNEHOOK_ALL="true")
    with socket.create_server(("127.0.0.1", ssh_keys.port)) as host:
        result = cli(tmp_path).invoke(args=["prune", "--dry-run"])
        host.setblocking(False)
        with pytest.raises(BlockingIOError):
            host.accept()  # nobody connected to the host
    assert result.exit_code == 0
    assert f"target:  127.0.0.1 (root@127.0.0.1:{ssh_keys.port})" in result.output
    assert "command: docker builder prune -f -a --filter until=168h" in result.output


@pytest.mark.parametrize("command", ["prune", "status", "check"])
def test_every_command_has_help(command, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    result = cli(tmp_path).invoke(args=[command, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_check_with_the_kill_switch_off_says_prunes_are_disabled(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PRUNEHOOK_ENABLED", "false")
    result = cli(tmp_path).invoke(args=["check"])
    assert result.exit_code == 1
    assert "FAIL  enabled      PRUNEHOOK_ENABLED is false: prunes are disabled" in result.output
    assert "fix: set PRUNEHOOK_ENABLED=true" in result.output
    assert "FAIL  target" in result.output  # the other checks still run


def test_check_says_prunes_run_when_enabled(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    result = cli(tmp_path).invoke(args=["check"])
    assert "PASS  enabled      prunes run when a trigger is due" in result.output
