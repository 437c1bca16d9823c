"""contrib/prunehook-guard, run as sshd runs a forced command: SSH_ORIGINAL_COMMAND in the
environment, options from authorized_keys. A stand-in docker prints the argv it got and
the name of its parent, so a test sees exactly what would have run on the host, and under
what. The real sshd path is in tests/test_real_prune.py."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import GUARD, LoopDisk
from tests.readme import pages
from webhook.core.command import (
    BUILDX_INSPECT,
    BUILDX_VERSION,
    DAEMON_ADDRESS,
    DOCKER_ROOT_DIR,
    DOCKER_VERSION,
    SYSTEM_DF,
    build_df_command,
    build_keep_storage_command,
    build_prune_command,
)

DENIED = 126
USAGE_ERROR = 64
PRUNE = "docker builder prune -f --filter until=24h"


@pytest.fixture
def fake_docker(tmp_path: Path) -> Path:
    """A docker that only says what it was asked and who started it."""
    path = tmp_path / "bin" / "docker"
    path.parent.mkdir()
    path.write_text(
        '#!/bin/sh\nprintf "parent=%s\\n" "$(cat /proc/$PPID/comm)"\nprintf "[%s]" "$@"\n'
    )
    path.chmod(0o755)
    return path


@pytest.fixture
def fake_df(tmp_path: Path) -> Path:
    """A df that only says what it was asked."""
    path = tmp_path / "bin" / "df"
    path.write_text('#!/bin/sh\nprintf "[%s]" "$@"\n')
    path.chmod(0o755)
    return path


@pytest.fixture
def guard(tmp_path: Path, fake_docker: Path, fake_df: Path):
    log = tmp_path / "guard.log"

    def run(command: str, *options: str, path: str | None = None, connection: str = ""):
        env = {"SSH_ORIGINAL_COMMAND": command, "PATH": path or os.environ["PATH"]}
        if connection:
            env["SSH_CONNECTION"] = connection
        argv = ["bash", str(GUARD), "--docker", str(fake_docker), "--df", str(fake_df)]
        argv += ["--log", str(log), *options]
        result = subprocess.run(argv, env=env, capture_output=True, timeout=30)
        logged = log.read_bytes().decode("ascii").splitlines() if log.exists() else []
        return result.returncode, result.stdout.decode(), result.stderr.decode(), logged

    return run


def ran(stdout: str) -> list[str]:
    """The argv the stand-in docker got."""
    line = stdout.splitlines()[-1]
    return line[1:-1].split("][")


@pytest.mark.parametrize(
    ("until", "options"),
    [
        ("24h", ()),
        ("1h", ()),
        ("1h0m0s", ()),
        ("90m", ()),
        ("3600s", ()),
        ("3600000ms", ()),
        ("1.5h", ()),
        ("59m60s", ()),
        ("0.5h30m", ()),
        ("2562047h", ()),
        ("1s", ("--min-until", "1s")),
        ("0s", ("--min-until", "0s")),
        ("1500ms", ("--min-until", "1.5s")),
        ("100us", ("--min-until", "100000ns")),
    ],
)
def test_guard_runs_the_prune_rebuilt_from_its_values(guard, until, options):
    command = f"docker builder prune -f --filter until={until}"
    rc, stdout, stderr, logged = guard(command, *options)
    assert rc == 0, stderr
    assert ran(stdout) == ["builder", "prune", "-f", "--filter", f"until={until}"]
    assert logged == [f"allowed {command}"]


def test_guard_runs_the_prune_under_its_time_limit(guard):
    rc, stdout, _, _ = guard(PRUNE)
    assert rc == 0
    assert stdout.splitlines()[0] == "parent=timeout"


def test_guard_runs_docker_and_timeout_by_path_never_from_the_callers_path(guard, tmp_path):
    impostors = tmp_path / "impostors"
    impostors.mkdir()
    for name in ("docker", "timeout"):
        (impostors / name).write_text(f"#!/bin/sh\necho impostor {name}\n")
        (impostors / name).chmod(0o755)
    rc, stdout, _, _ = guard(PRUNE, path=f"{impostors}:{os.environ['PATH']}")
    assert rc == 0
    assert "impostor" not in stdout
    assert ran(stdout) == ["builder", "prune", "-f", "--filter", "until=24h"]


def test_guard_allows_all_cache_only_with_allow_all(guard):
    command = "docker builder prune -f -a --filter until=24h"
    rc, stdout, stderr, logged = guard(command)
    assert (rc, stdout) == (DENIED, "")
    assert "--allow-all" in stderr
    assert logged == [f"denied {command}"]

    rc, stdout, _, logged = guard(command, "--allow-all")
    assert rc == 0
    assert ran(stdout) == ["builder", "prune", "-f", "-a", "--filter", "until=24h"]
    assert logged[-1] == f"allowed {command}"


@pytest.mark.parametrize(
    ("until", "options"),
    [
        ("0s", ()),
        ("59m", ()),
        ("59m59.999999999s", ()),
        ("0.9999h", ()),
        (".5h", ()),
        ("3599999ms", ()),
        ("1h", ("--min-until", "1h0.5s")),
        ("999ms", ("--min-until", "1s")),
        ("0s", ("--min-until", "1ns")),
    ],
)
def test_guard_denies_an_until_under_the_minimum(guard, until, options):
    command = f"docker builder prune -f -a --filter until={until}"
    rc, stdout, stderr, logged = guard(command, "--allow-all", *options)
    assert (rc, stdout) == (DENIED, "")
    assert "--min-until" in stderr
    assert logged == [f"denied {command}"]


# 5124096h wraps a 64-bit count of nanoseconds round to about 25 minutes
@pytest.mark.parametrize(
    "until", ["2562048h", "5124096h", "9223372036854775808ns", "99999999999999999999h"]
)
def test_guard_denies_an_until_longer_than_docker_accepts(guard, until):
    command = f"docker builder prune -f --filter until={until}"
    rc, stdout, stderr, _ = guard(command, "--min-until", "1s")
    assert (rc, stdout) == (DENIED, "")
    assert "longer than Docker accepts" in stderr


@pytest.mark.parametrize(
    "command",
    [
        "",
        "rm -rf /",
        "docker info",
        "docker builder prune -f",
        "docker builder prune --filter until=24h",
        "docker builder prune -f --filter until=24d",
        "docker builder prune -f --filter until=-24h",
        "docker builder prune -f --filter until=2006-01-02T15:04:05",
        "docker system prune -f -a --volumes",
        f" {PRUNE}",
        f"{PRUNE} ",
        f"{PRUNE}; rm -rf /",
        f"{PRUNE} | sh",
        f"{PRUNE} && rm -rf /",
        f"{PRUNE} $(rm -rf /)",
        f"{PRUNE}$(rm -rf /)",
        f"{PRUNE}`rm -rf /`",
        f"{PRUNE}\nrm -rf /",
        f"{PRUNE}\r",
        f"{PRUNE} --filter until=1s",
        f"{PRUNE} --filter label=keep=false",
        f"{PRUNE} -a",
    ],
)
def test_guard_denies_anything_else_and_runs_nothing(guard, command):
    rc, stdout, stderr, logged = guard(command, "--allow-all", "--min-until", "0s")
    assert (rc, stdout) == (DENIED, "")
    assert stderr.startswith("prunehook-guard: denied: this key may only run")
    assert len(logged) == 1
    assert logged[0].startswith("denied ")


def test_guard_refuses_an_overlong_command_before_reading_it(guard):
    # matches the pattern but for its length: the length is checked before anything else
    padded = f"docker builder prune -f --filter until={'0' * 300}24h"
    rc, stdout, stderr, logged = guard(padded)
    assert (rc, stdout) == (DENIED, "")
    assert "over 256 bytes" in stderr
    assert logged == [f"denied {padded[:256]} [... {len(padded) - 256} more bytes]"]

    huge = f"docker builder prune -f --filter until={'1h' * 60_000}"
    rc, stdout, stderr, logged = guard(huge)
    assert (rc, stdout) == (DENIED, "")
    assert "over 256 bytes" in stderr
    assert len(logged[-1]) < 400


@pytest.mark.parametrize("separator", ["\n", "\r\n", "\r", "\x1b[1A\x1b[2K", "\x85", "\u2028"])
def test_a_command_cannot_forge_an_allowed_line_in_the_log(guard, separator):
    forged = f"rm -rf /{separator}allowed {PRUNE}"
    rc, _, _, logged = guard(forged)
    assert rc == DENIED
    assert len(logged) == 1
    assert logged[0].startswith("denied rm -rf /\\x")
    assert logged[0].endswith(f"allowed {PRUNE}")


def test_the_log_escapes_backslashes_so_an_escape_cannot_be_faked(guard):
    rc, _, _, logged = guard("rm -rf /\\x0aallowed")
    assert rc == DENIED
    assert logged == ["denied rm -rf /\\\\x0aallowed"]


@pytest.mark.parametrize(
    "options",
    [
        ("--min-until", "1d"),
        ("--min-until", "soon"),
        ("--min-until", "-1h"),
        ("--timeout", "5m"),
        ("--docker", "docker"),
        ("--docker", "/nonexistent/docker"),
        ("--df", "df"),
        ("--min-keep-storage", "10GB"),
        ("--min-keep-storage", "-1"),
        ("--min-keep-storage", "9223372036854775808"),
        ("--allow-everything",),
    ],
)
def test_guard_with_a_bad_option_refuses_every_command(guard, options):
    rc, stdout, stderr, logged = guard(PRUNE, *options)
    assert (rc, stdout) == (USAGE_ERROR, "")
    assert stderr.startswith("prunehook-guard: ")
    assert logged == []


KEEP = "docker builder prune -f --keep-storage 5000000000"
PROBES = (
    "docker system df",
    "docker version",
    "docker buildx version",
    "docker buildx inspect",
    "docker buildx du",
)


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        (KEEP, ["builder", "prune", "-f", "--keep-storage", "5000000000"]),
        (
            "docker builder prune -f --keep-storage 0",
            ["builder", "prune", "-f", "--keep-storage", "0"],
        ),
        (
            "docker builder prune -f --keep-storage 9223372036854775807",
            ["builder", "prune", "-f", "--keep-storage", "9223372036854775807"],
        ),
        *[(probe, probe.split()[1:]) for probe in PROBES],
    ],
)
def test_guard_runs_stage_two_and_the_docker_probes_rebuilt_from_their_values(guard, command, argv):
    rc, stdout, stderr, logged = guard(command, "--allow-keep-storage")
    assert rc == 0, stderr
    assert stdout.splitlines()[0] == "parent=timeout"
    assert ran(stdout) == argv
    assert logged == [f"allowed {command}"]


def test_guard_denies_stage_two_unless_the_host_opts_in_and_names_the_options(guard):
    """By default a stolen key cannot send `--keep-storage 0`, which prunes fresh cache too:
    the host allows stage 2 only for a target with disk goals, by one of two options."""
    command = "docker builder prune -f --keep-storage 0"
    rc, stdout, stderr, logged = guard(command)
    assert (rc, stdout) == (DENIED, "")
    assert "--allow-keep-storage" in stderr and "--min-keep-storage BYTES" in stderr
    assert "max_cache, min_free" in stderr  # which targets need it
    assert logged == [f"denied {command}"]
    assert guard(command, "--allow-keep-storage")[0] == 0
    assert guard(command, "--min-keep-storage", "0")[0] == 0  # an explicit minimum opts in
    assert guard(KEEP, "--min-keep-storage", "1000")[0] == 0


@pytest.mark.parametrize("path", ["/var/lib/docker", "/", "/srv/docker-data/v2.1_x+y"])
def test_guard_runs_df_of_an_absolute_path_and_nothing_more(guard, path):
    command = f"df -B1 --output=size,avail {path}"
    rc, stdout, stderr, logged = guard(command)
    assert rc == 0, stderr
    assert ran(stdout) == ["-B1", "--output=size,avail", "--", path]
    assert logged == [f"allowed {command}"]


def test_guard_allows_stage_two_with_all_cache_only_with_allow_all(guard):
    command = "docker builder prune -f -a --keep-storage 1000"
    rc, stdout, stderr, _ = guard(command, "--allow-keep-storage")
    assert (rc, stdout) == (DENIED, "")
    assert "--allow-all" in stderr
    rc, stdout, _, _ = guard(command, "--allow-keep-storage", "--allow-all")
    assert rc == 0
    assert ran(stdout) == ["builder", "prune", "-f", "-a", "--keep-storage", "1000"]


@pytest.mark.parametrize(
    ("kept", "minimum", "allowed"),
    [
        ("999999999", "1000000000", False),
        ("1000000000", "1000000000", True),
        ("2", "10", False),
        ("10", "2", True),
        ("0", "1", False),
        ("9223372036854775807", "9223372036854775806", True),
    ],
)
def test_guard_denies_a_keep_storage_under_the_minimum(guard, kept, minimum, allowed):
    command = f"docker builder prune -f --keep-storage {kept}"
    rc, stdout, stderr, _ = guard(command, "--min-keep-storage", minimum)
    if allowed:
        assert rc == 0, stderr
    else:
        assert (rc, stdout) == (DENIED, "")
        assert "--min-keep-storage" in stderr


@pytest.mark.parametrize("kept", ["9223372036854775808", "99999999999999999999", "007", "00"])
def test_guard_denies_a_keep_storage_docker_would_not_read_as_meant(guard, kept):
    command = f"docker builder prune -f --keep-storage {kept}"
    rc, stdout, stderr, _ = guard(command, "--allow-keep-storage")
    assert (rc, stdout) == (DENIED, "")
    assert "whole number of bytes" in stderr


@pytest.mark.parametrize(
    "command",
    [
        "docker builder prune -f --keep-storage",
        "docker builder prune -f --keep-storage 10GB",
        "docker builder prune -f --keep-storage -1",
        "docker builder prune -f --keep-storage 1e9",
        "docker builder prune -f --keep-storage=1000",
        "docker builder prune --keep-storage 1000",
        "docker builder prune -f --max-used-space 1000",
        "docker builder prune -f --min-free-space 1000",
        "docker builder prune -f --reserved-space 1000",
        "docker builder prune -f --keep-storage 1000 --filter until=24h",
        "docker builder prune -f --filter until=24h --keep-storage 1000",
        f"{KEEP}; rm -rf /",
        f"{KEEP} | sh",
        f"{KEEP} && rm -rf /",
        f"{KEEP} $(rm -rf /)",
        f"{KEEP}$(rm -rf /)",
        f"{KEEP}`rm -rf /`",
        f"{KEEP}\nrm -rf /",
        f"{KEEP} --filter label=keep=false",
        f"{KEEP} -a",
        "df -B1 --output=size,avail /var/lib/docker; rm -rf /",
        "df -B1 --output=size,avail /var/lib/docker | sh",
        "df -B1 --output=size,avail $(rm -rf /)",
        "df -B1 --output=size,avail `rm -rf /`",
        "df -B1 --output=size,avail /var/lib/docker\nrm -rf /",
        "df -B1 --output=size,avail /var/lib/docker /etc",
        "df -B1 --output=size,avail var/lib/docker",
        "df -B1 --output=size,avail --version",
        "df -B1 --output=size,avail,target /var/lib/docker",
        "df -h /var/lib/docker",
        "df /",
        "docker system df -v",
        "docker system df; rm -rf /",
        "docker system df $(rm -rf /)",
        "docker system df`rm -rf /`",
        "docker system df\nrm -rf /",
        "docker system prune -f",
        "docker version; rm -rf /",
        "docker version --format {{.Server.Version}}",
        "docker buildx version | sh",
        "docker buildx inspect --bootstrap",
        "docker buildx inspect; rm -rf /",
        "docker buildx du --verbose",
        "docker buildx du --builder remote",
        "docker buildx du; rm -rf /",
        "docker buildx du\nrm -rf /",
        "docker buildx rm default",
        "docker buildx prune -f",
        " docker system df",
        "docker system df ",
        "docker  version",
    ],
)
def test_guard_denies_stage_two_or_a_probe_with_anything_changed_or_appended(guard, command):
    rc, stdout, stderr, logged = guard(command, "--allow-all")
    assert (rc, stdout) == (DENIED, "")
    assert stderr.startswith("prunehook-guard: denied: this key may only run")
    assert len(logged) == 1
    assert logged[0].startswith("denied ")


def test_guard_denies_df_of_a_path_that_climbs(guard):
    rc, stdout, stderr, _ = guard("df -B1 --output=size,avail /var/lib/../../etc")
    assert (rc, stdout) == (DENIED, "")
    assert "may not climb" in stderr


def test_the_guard_allows_every_command_prunehook_builds(guard):
    """The service's builders and the guard's patterns are written apart: they must agree."""
    built = [
        build_prune_command("24h", prune_all=True),
        build_keep_storage_command(0, prune_all=True),
        build_keep_storage_command(2**63 - 1, prune_all=False),
        build_df_command("/var/lib/docker"),
        SYSTEM_DF,
        DOCKER_VERSION,
        BUILDX_VERSION,
        BUILDX_INSPECT,
        DOCKER_ROOT_DIR,
    ]
    for command in built:
        rc, _, stderr, _ = guard(command, "--allow-all", "--allow-keep-storage")
        assert rc == 0, (command, stderr)


def test_every_authorized_keys_line_in_the_readme_is_one_the_guard_accepts(guard, tmp_path):
    """The lines of the README and the docs site, as an operator copies them (a state file
    moved here): their options parse, and only a line with --allow-keep-storage lets stage 2
    through."""
    docs = "\n".join(page.read_text() for page in pages())
    found = re.findall(r'command="/usr/local/bin/prunehook-guard ([^"]+)"', docs)
    assert len(found) >= 3 and any("--allow-keep-storage" in line for line in found)
    for i, line in enumerate(found):
        state = str(tmp_path / f"state-{i}")
        words = [state if word.startswith("/var/lib/") else word for word in line.split()]
        rc, _, stderr, _ = guard("docker version", *words)
        assert rc == 0, (line, stderr)
        rc, _, stderr, _ = guard(KEEP, *words)
        assert (rc == 0) == ("--allow-keep-storage" in words), (line, stderr)


def test_the_docker_root_probe_runs_as_docker_info_with_its_template(guard):
    rc, stdout, _, _ = guard(DOCKER_ROOT_DIR)
    assert rc == 0
    assert ran(stdout) == ["info", "--format", "{{.DockerRootDir}}"]
    assert guard("docker info")[0] == DENIED
    assert guard("docker info --format {{.ServerVersion}}")[0] == DENIED


def test_a_docker_host_option_reaches_docker_as_docker_host(guard, tmp_path):
    env_docker = tmp_path / "bin" / "env-docker"
    env_docker.write_text('#!/bin/sh\nprintf "[%s]" "$DOCKER_HOST" "$@"\n')
    env_docker.chmod(0o755)
    socket = "unix:///run/user/1000/docker.sock"

    rc, stdout, _, _ = guard(PRUNE, "--docker-host", socket, "--docker", str(env_docker))

    assert rc == 0
    assert ran(stdout) == [socket, "builder", "prune", "-f", "--filter", "until=24h"]


@pytest.mark.parametrize(
    ("url", "daemon"),
    [
        ("unix:///run/user/1000/docker.sock", True),
        ("tcp://127.0.0.1:2375", True),
        ("tcp://[::1]:2375", True),
        ("ssh://ci@build-1.example", True),
        ("unix://relative", False),
        ("unix:///x;rm -rf /", False),
        ('unix:///x",port-forwarding', False),
        ("http://host", False),
        ("tcp://h $(id)", False),
    ],
)
def test_the_guard_and_hosts_add_agree_on_what_a_docker_host_may_be(guard, url, daemon):
    """A --docker-host the guard refuses would stop every prune on that host; one hosts add
    takes is printed into the authorized_keys line."""
    rc, _, stderr, _ = guard(PRUNE, "--docker-host", url)
    assert (rc == 0) is daemon, stderr
    assert (DAEMON_ADDRESS.fullmatch(url) is not None) is daemon
    if not daemon:
        assert rc == USAGE_ERROR and "--docker-host" in stderr


TOO_SOON = 75


def interval_options(state: Path, seconds: int = 3600) -> tuple[str, ...]:
    return ("--min-interval", str(seconds), "--state", str(state), "--timeout", "300")


def test_the_host_refuses_a_prune_within_its_own_interval_and_says_when(guard, tmp_path):
    state = tmp_path / "guard.state"
    state.write_text(f"{int(time.time()) - 1000}\n")  # a run opened 1000 s ago
    rc, stdout, stderr, logged = guard(PRUNE, *interval_options(state))
    assert rc == TOO_SOON
    match = re.search(r"last prune (\d+) s ago; next allowed in (\d+) s", stderr)
    assert match, stderr
    ago, wait = int(match[1]), int(match[2])
    assert 999 <= ago <= 1005 and ago + wait == 3600
    assert stdout == ""  # docker never ran
    assert logged == [f"refused {PRUNE}"]


def test_the_first_prune_opens_the_hosts_interval(guard, tmp_path):
    state = tmp_path / "guard.state"
    before = int(time.time())
    rc, stdout, _, _ = guard(PRUNE, *interval_options(state))
    assert rc == 0 and ran(stdout)[-4:] == ["prune", "-f", "--filter", "until=24h"]
    assert before <= int(state.read_text().split()[0]) <= int(time.time())
    assert guard(PRUNE, *interval_options(state))[0] == TOO_SOON


RUN_CONNECTION = "127.0.0.1 50123 127.0.0.1 22"


def test_a_later_stage_of_a_run_passes_over_the_same_connection_only(guard, tmp_path):
    state = tmp_path / "guard.state"
    assert guard(PRUNE, *interval_options(state), connection=RUN_CONNECTION)[0] == 0
    opened = state.read_text()
    assert guard(PRUNE, *interval_options(state), connection=RUN_CONNECTION)[0] == 0
    # the interval is the run's, not extended
    assert state.read_text().split()[0] == opened.split()[0]
    another_run = "127.0.0.1 50999 127.0.0.1 22"
    assert guard(PRUNE, *interval_options(state), connection=another_run)[0] == TOO_SOON


def test_a_prune_after_the_hosts_interval_is_allowed_and_reopens_it(guard, tmp_path):
    state = tmp_path / "guard.state"
    state.write_text(f"{int(time.time()) - 3601}\n")
    assert guard(PRUNE, *interval_options(state))[0] == 0
    assert abs(int(state.read_text().split()[0]) - time.time()) <= 2


def test_a_state_file_that_is_not_a_time_counts_as_no_prune_yet(guard, tmp_path):
    state = tmp_path / "guard.state"
    state.write_text("garbage\n")
    assert guard(PRUNE, *interval_options(state))[0] == 0


@pytest.mark.parametrize(
    "options",
    [("--min-interval", "60"), ("--min-interval", "soon", "--state", "/tmp/x"),
     ("--min-interval", "60", "--state", "relative/path")],
)  # fmt: skip
def test_a_host_interval_without_a_state_file_or_seconds_is_a_usage_error(guard, options):
    assert guard(PRUNE, *options)[0] == USAGE_ERROR


def test_probes_pass_the_hosts_interval_and_never_open_it(guard, tmp_path):
    """A probe only reads: `flask check`, or a run's measure before its prune, is never
    refused and never starts the window that would refuse the run's own prune."""
    state = tmp_path / "guard.state"
    state.write_text(f"{int(time.time()) - 10}\n")  # a run opened 10 s ago
    opened = state.read_text()
    for probe in (*PROBES, "df -B1 --output=size,avail /var/lib/docker"):
        rc, _, stderr, _ = guard(probe, *interval_options(state), connection=RUN_CONNECTION)
        assert rc == 0, (probe, stderr)
    assert state.read_text() == opened
    state.unlink()
    guard("docker system df", *interval_options(state), connection="127.0.0.1 1 127.0.0.1 22")
    assert guard(PRUNE, *interval_options(state), connection=RUN_CONNECTION)[0] == 0


def test_stage_two_of_a_run_passes_the_interval_its_stage_one_opened(guard, tmp_path):
    state = tmp_path / "guard.state"
    options = (*interval_options(state), "--allow-keep-storage")
    assert guard(PRUNE, *options, connection=RUN_CONNECTION)[0] == 0
    assert guard(KEEP, *options, connection=RUN_CONNECTION)[0] == 0
    another_run = "127.0.0.1 50999 127.0.0.1 22"
    assert guard(KEEP, *options, connection=another_run)[0] == TOO_SOON


def age_the_record(state: Path, seconds: int) -> None:
    """Move the time the guard recorded back, the rest of its record as it wrote it."""
    opened, rest = state.read_text().split(" ", 1)
    state.write_text(f"{int(opened) - seconds} {rest}")


# --timeout 300: one run of two prunes and the measures between them ends within 3 * 310 s
@pytest.mark.parametrize(("age", "passes"), [(900, True), (1000, False), (10 * 86400, False)])
def test_a_later_stage_passes_over_the_runs_connection_only_within_the_runs_time(
    guard, tmp_path, age, passes
):
    """The connection is the client's to choose (its port): a record days old that names
    it is no run still going, and a prune over it is held to the host's interval."""
    state = tmp_path / "guard.state"
    options = (*interval_options(state, seconds=30 * 86400), "--allow-keep-storage")
    assert guard(PRUNE, *options, connection=RUN_CONNECTION)[0] == 0
    age_the_record(state, age)
    rc, stdout, stderr, _ = guard(KEEP, *options, connection=RUN_CONNECTION)
    if passes:
        assert rc == 0, stderr
    else:
        assert (rc, stdout) == (TOO_SOON, "")
        # the second guard may start in the next second of the clock
        assert re.search(f"last prune ({age}|{age + 1}) s ago", stderr), stderr


def test_one_connection_passes_at_most_the_two_prunes_of_a_run(guard, tmp_path):
    """A run sends the age prune, then at most one --keep-storage prune: a third is refused."""
    state = tmp_path / "guard.state"
    options = (*interval_options(state), "--allow-keep-storage")
    assert guard(PRUNE, *options, connection=RUN_CONNECTION)[0] == 0
    assert guard(KEEP, *options, connection=RUN_CONNECTION)[0] == 0
    rc, stdout, stderr, logged = guard(KEEP, *options, connection=RUN_CONNECTION)
    assert (rc, stdout) == (TOO_SOON, "")
    assert "next allowed in" in stderr
    assert logged[-1] == f"refused {KEEP}"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real ext4 filesystem of 8 MB, mounted: where the host keeps its --state."""
    disk = LoopDisk(tmp_path / "disk", size_mb=8)
    try:
        yield disk.start().mountpoint
    finally:
        disk.stop()


def fill(folder: Path) -> None:
    """Write until the filesystem refuses one more byte (as root: its reserve too)."""
    handle = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for chunk in (b"\0" * 65536, b"\0"):
            try:
                while True:
                    os.write(handle, chunk)
            except OSError as error:
                assert error.errno == errno.ENOSPC
    finally:
        os.close(handle)


def test_a_full_disk_with_no_state_yet_is_still_pruned_and_the_guard_says_why(guard, small_disk):
    """The host filled before its first prune: the interval must not stop the prune that
    frees it. The guard lets it through and logs why its time went unrecorded."""
    fill(small_disk)
    state = small_disk / "guard.state"
    rc, stdout, stderr, logged = guard(PRUNE, *interval_options(state))
    assert rc == 0, stderr
    assert ran(stdout) == ["builder", "prune", "-f", "--filter", "until=24h"]
    assert f"cannot write the state file {state}" in stderr
    assert "No space left on device" in stderr
    (note,) = [line for line in logged if line.startswith("unrecorded ")]
    assert "No space left on device" in note
    assert logged[-1] == f"allowed {PRUNE}"


def test_on_a_full_disk_the_state_is_rewritten_in_place_and_the_interval_still_holds(
    guard, small_disk
):
    """A record rewritten on a full disk keeps its size, so the write needs no new block:
    it is never truncated to nothing, and the next prune is still refused."""
    state = small_disk / "guard.state"
    assert guard(PRUNE, *interval_options(state, seconds=1))[0] == 0
    first = int(state.read_text().split()[0])
    fill(small_disk)
    # the second after it, as the guard's clock tells it: bash's time() reads the kernel's
    # coarse clock, up to a tick behind time.time()
    while time.time() < first + 1.05:
        time.sleep(0.1)
    rc, _, stderr, _ = guard(PRUNE, *interval_options(state, seconds=1))
    assert rc == 0, stderr
    assert "cannot write" not in stderr
    assert int(state.read_text().split()[0]) > first
    assert guard(PRUNE, *interval_options(state, seconds=3600))[0] == TOO_SOON


def test_a_state_filesystem_remounted_read_only_holds_the_interval_and_lets_a_due_prune_through(
    guard, small_disk
):
    """The state's filesystem went read-only (errors=remount-ro) while Docker's own disk
    fills: the host's interval is still read, and a due prune runs unrecorded, as on a full
    disk; with no state yet, the prune runs too."""
    state = small_disk / "guard.state"
    state.write_text(f"{int(time.time()) - 1000}\n")  # a run opened 1000 s ago
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True, timeout=30)

    assert guard(PRUNE, *interval_options(state, seconds=3600))[0] == TOO_SOON
    rc, stdout, stderr, logged = guard(PRUNE, *interval_options(state, seconds=600))
    assert rc == 0, stderr
    assert ran(stdout) == ["builder", "prune", "-f", "--filter", "until=24h"]
    assert f"cannot write the state file {state}: Read-only file system" in stderr
    assert logged[-2].startswith("unrecorded ") and logged[-1] == f"allowed {PRUNE}"
    never = small_disk / "never.state"
    rc, _, stderr, _ = guard(PRUNE, *interval_options(never))
    assert rc == 0, stderr
    assert f"cannot create the state file {never}: Read-only file system" in stderr
