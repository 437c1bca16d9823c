"""The operator's commands: check (preflight), prune --dry-run, --help on each."""

from __future__ import annotations

import json
import socket

import pytest
from click.testing import CliRunner

from webhook import create_app
from webhook.cli.main import main
from webhook.core.targets import PrunePolicy, SSHEndpoint, Target


def cli(tmp_path):
    return create_app(instance_path=str(tmp_path / "instance")).test_cli_runner()


def test_check_passes_against_a_guarded_build_host(make_sshd, docker_engine, env_for, tmp_path):
    host = make_sshd(docker_host=docker_engine.host, docker_root=docker_engine.data_root)
    env_for(host)
    result = cli(tmp_path).invoke(args=["check"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    names = ("config", "token", "database", "target", "key", "host key", "ssh login", "docker")
    for name in (*names, "disk", "cache", "stage 2"):
        assert any(line.startswith(f"PASS  {name}") for line in lines), name
    assert "(no buildx: the classic builder prunes)" in result.output
    assert f"PASS  disk         {docker_engine.data_root}: " in result.output
    assert "PASS  stage 2      no goal set (max_cache, min_free)" in result.output
    assert "WARN  buildkit gc  Docker 20.10." in result.output
    assert "engines before 28.2 keep BuildKit's GC off unless daemon.json" in result.output
    # read-only probes only, every one the guard's, on one connection
    assert host.commands_run() == [
        "allowed docker version",
        "allowed docker buildx version",
        f"allowed df -B1 --output=size,avail {docker_engine.data_root}",
        "allowed docker system df",
    ]
    assert host.log_path.read_text().count("Accepted publickey") == 1


def test_check_says_when_the_hosts_guard_is_too_old_for_the_probes(make_sshd, env_for, tmp_path):
    """A guard from before the probes allows the age prune alone and denies the rest."""
    host = make_sshd()
    old_guard = tmp_path / "old-guard"
    old_guard.write_text(
        "#!/bin/sh\necho \"prunehook-guard: denied: this key may only run 'docker builder"
        " prune -f [-a] --filter until=<duration>'\" >&2\nexit 126\n"
    )
    old_guard.chmod(0o755)
    public = host.client_key.with_suffix(".pub").read_text().strip()
    host.authorized_keys.write_text(f'restrict,command="{old_guard}" {public}\n')
    env_for(host)
    result = cli(tmp_path).invoke(args=["check"])
    assert result.exit_code == 1
    assert "PASS  ssh login" in result.output
    assert "FAIL  docker       the host's prunehook-guard denies the read-only probes" in (
        result.output
    )
    assert "fix: install this contrib/prunehook-guard on the host" in result.output


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
    # who was refused, and where to look
    assert f"@127.0.0.1:{host.port} refused the key" in result.output
    assert "/.ssh/authorized_keys on 127.0.0.1" in result.output


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
    assert "WARN  config       PRUNEHOOK_UNTIL: 'garbage' is not a duration" in result.output
    assert "using 24h" in result.output


def test_check_with_an_instance_folder_that_cannot_be_made_says_so_naming_the_variable(
    monkeypatch, tmp_path
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PRUNEHOOK_INSTANCE_PATH", "/proc/nope")

    said = CliRunner().invoke(main, ["check"])

    assert said.exit_code == 2, said.output
    assert (
        "PRUNEHOOK_INSTANCE_PATH: the instance folder /proc/nope cannot be made: No such file"
        in said.output
    )


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


def test_dry_run_says_when_a_second_stage_would_follow(ssh_keys, env_for, tmp_path):
    env_for(ssh_keys, PRUNEHOOK_MAX_CACHE="10GB", PRUNEHOOK_MIN_FREE="15%")
    result = cli(tmp_path).invoke(args=["prune", "--dry-run"])
    assert result.exit_code == 0
    assert "command: docker builder prune -f --filter until=24h" in result.output
    assert (
        "then:    docker builder prune -f --keep-storage <bytes>, when a goal"
        " (max_cache=10GB min_free=15%) is still missed"
    ) in result.output
    listed = cli(tmp_path).invoke(args=["targets"])
    assert "until=24h every 21600s  max_cache=10GB min_free=15%" in listed.output


def test_check_prints_a_hosts_control_bytes_escaped_never_sent():
    from webhook.preflight import Check

    line = Check("docker", False, "\x1b[2J\x1b[31mpwned\x07", fix="rm\x1b[0m").line()
    assert "\x1b" not in line and "\x07" not in line
    assert line == "FAIL  docker       \\x1b[2J\\x1b[31mpwned\\x07\n      fix: rm\\x1b[0m"


def test_check_quotes_the_keyscan_it_suggests(tmp_path):
    from webhook.core.targets import SSHEndpoint, Target
    from webhook.preflight import _known_host

    known = tmp_path / "my hosts; rm -rf ~"
    check = _known_host(Target("b", SSHEndpoint("build-1.example", 2222, known_hosts=str(known))))
    assert check.fix.startswith(f"ssh-keyscan -p 2222 build-1.example >> '{known}'")


def test_check_warns_about_a_key_file_others_may_read(tmp_path):
    from tests.harness.ssh import keygen
    from webhook.core.targets import SSHEndpoint, Target
    from webhook.preflight import _target_checks
    from webhook.remote.ssh import SSHRunner

    key = keygen(tmp_path / "prunehook")
    key.chmod(0o644)
    ssh = SSHEndpoint("build-1.example", key_file=str(key), known_hosts=str(tmp_path / "none"))
    checks = list(_target_checks(Target("b", ssh), SSHRunner()))
    (warned,) = [check.line() for check in checks if check.name == "key"]
    assert warned == (
        f"WARN  key          {key} loads, but its mode 644 lets others read it\n"
        f"      fix: chmod 600 {key}"
    )
    key.chmod(0o600)
    checks = list(_target_checks(Target("b", ssh), SSHRunner()))
    assert [check.line() for check in checks if check.name == "key"] == [
        f"PASS  key          {key} loads"
    ]


def test_a_skipped_prune_says_until_when(make_app, fake_host, clock):
    runner = make_app().test_cli_runner()
    assert runner.invoke(args=["prune"]).exit_code == 0
    clock.advance(3600)

    skipped = runner.invoke(args=["prune"])
    as_json = runner.invoke(args=["prune", "--json"])

    assert skipped.exit_code == 0
    assert skipped.stdout == ("127.0.0.1: skipped: interval not due yet; next allowed in 5 h\n")
    assert json.loads(as_json.stdout)["decision"] == "skipped"
    assert json.loads(as_json.stdout)["next_eligible_ts"] == clock() + 5 * 3600
    assert len(fake_host.commands) == 1


def test_check_of_a_wrong_docker_root_says_where_docker_keeps_its_data(
    make_sshd, docker_engine, env_for, tmp_path
):
    host = make_sshd(docker_host=docker_engine.host, docker_root=docker_engine.data_root)
    env_for(host, PRUNEHOOK_DOCKER_ROOT="/srv/not-docker")

    result = cli(tmp_path).invoke(args=["check"])

    assert result.exit_code == 1
    assert "FAIL  disk         df /srv/not-docker: " in result.output
    root = docker_engine.data_root
    assert f'fix: Docker keeps its data in {root}: set docker_root = "{root}"' in result.output
    assert host.commands_run()[-1] == "allowed docker info --format {{.DockerRootDir}}"


def test_a_host_whose_docker_socket_is_not_the_default_is_reached_through_the_guard(
    make_sshd, docker_engine, env_for, tmp_path
):
    """Rootless Docker, a second daemon: sshd gives the guard no DOCKER_HOST, its option does."""
    host = make_sshd(
        docker_root=docker_engine.data_root, guard_options=("--docker-host", docker_engine.host)
    )
    env_for(host)

    result = cli(tmp_path).invoke(args=["check"])

    assert result.exit_code == 0, result.output
    assert "PASS  cache" in result.output


def test_status_json_of_one_target_is_what_its_endpoint_answers(make_app):
    app = make_app()
    runner = app.test_cli_runner()
    assert runner.invoke(args=["prune"]).exit_code == 0

    shown = runner.invoke(args=["status", "--json", "--target", "127.0.0.1"])

    assert shown.exit_code == 0, shown.output
    answered = app.test_client().get("/status/127.0.0.1").get_json()
    assert json.loads(shown.stdout) == answered
    assert answered["target"] == "127.0.0.1"


def test_check_with_the_database_unreachable_says_so_once_not_once_per_watched_target(
    make_app, tmp_path
):
    watched = PrunePolicy(watch_interval_s=600)
    targets = tuple(
        Target(name, SSHEndpoint(f"{name}.example", user="ci", key="k"), watched)
        for name in ("build-1", "build-2", "build-3")
    )
    app = make_app(targets_file="targets.toml", file_targets=targets)
    state = tmp_path / "state.sqlite3"
    state.unlink()
    state.mkdir()  # where the database was, a folder SQLite cannot open

    result = app.test_cli_runner().invoke(args=["check"])

    assert result.exit_code == 1
    assert "FAIL  database     SQLite " in result.output
    assert result.output.count("unable to open database file") == 1
    for name in ("build-1", "build-2", "build-3"):
        assert f"WARN  forecast     {name}: not read, as the database check failed\n" in (
            result.output
        )
