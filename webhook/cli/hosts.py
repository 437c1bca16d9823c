"""`hosts add`: a build host in one step. Its key fetched and confirmed by a person, its
known_hosts line, the `authorized_keys` line its guard needs, its `[targets.NAME]` block
appended to the targets file (comments kept), then its checks."""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click
from environs import Env

from webhook.config import DOTENV, PREFIX, ConfigError, Settings, load_settings
from webhook.core.command import DAEMON_ADDRESS, GUARD_PATH
from webhook.core.targets import NAME_RULE, PORTS, Fleet, PrunePolicy, Target, is_name
from webhook.remote.ssh import (
    KNOWN_HOSTS,
    SSHFailure,
    fetch_host_key,
    known_name,
    load_private_key,
)

if TYPE_CHECKING:
    import paramiko

GUARD = "/usr/local/bin/prunehook-guard"
GUARD_TIMEOUT_S = 300  # the guard's own default --timeout
FILE_VARIABLE = f"{PREFIX}TARGETS_FILE"
BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
NEW_FILE = '# prunehook\'s build hosts: a [targets.NAME] table each (DESIGN.md, "The fleet")\n'


def guard_options(policy: PrunePolicy, docker_host: str | None) -> list[str]:
    """What prunehook-guard must allow for this policy, and no more: `until` as the
    shortest, `-a` only when the policy prunes all, stage 2 only with disk goals."""
    options = ["--min-until", policy.until]
    if policy.timeout_s > GUARD_TIMEOUT_S:  # the guard would kill a prune prunehook awaits
        options += ["--timeout", str(math.ceil(policy.timeout_s))]
    if policy.prune_all:
        options.append("--allow-all")
    if policy.goals.any:
        options.append("--allow-keep-storage")
    if docker_host:
        options += ["--docker-host", docker_host]
    return options


def target_block(
    name: str, host: str, port: int | None, user: str | None, aliases: Sequence[str]
) -> str:
    """The `[targets.NAME]` table, with TOML's own quoting (JSON strings are TOML strings;
    a name with a dot is a quoted key, not a nested table)."""
    key = name if BARE_KEY.fullmatch(name) else json.dumps(name)
    lines = [f"[targets.{key}]", f"host = {json.dumps(host)}"]
    if port is not None:
        lines.append(f"port = {port}")
    if user:
        lines.append(f"user = {json.dumps(user)}")
    if aliases:
        lines.append(f"aliases = [{', '.join(json.dumps(alias) for alias in aliases)}]")
    return "\n".join(lines) + "\n"


def _refuse(message: str) -> NoReturn:
    click.echo(f"refused: {message}; nothing was written", err=True)
    sys.exit(1)


def _settings_with(candidate: str) -> Settings:
    """The settings as they will be with `candidate` as the targets file, checked as a
    start checks them (names, hosts and aliases shared, keys readable)."""
    try:
        settings, _ = load_settings(DOTENV, targets_file=candidate)
    except ConfigError as error:
        shown = str(error).replace(candidate, "the targets file with this host")
        _refuse(shown)
    return settings


def _confirmed(target: Target, expected: str | None) -> paramiko.PKey:
    """The host's key, once its fingerprint is the one expected, or a person said yes to it."""
    ssh = target.ssh
    try:
        key = fetch_host_key(ssh.address, ssh.port, ssh.connect_timeout_s)
    except SSHFailure as failure:
        _refuse(str(failure))
    seen = key.fingerprint  # SHA256:..., as ssh-keygen -l prints it
    click.echo(f"{known_name(ssh.address, ssh.port)} offers a {key.get_name()} key: {seen}")
    kind = next((k for k in ("ed25519", "ecdsa", "rsa") if k in key.get_name()), "ed25519")
    on_host = f"ssh-keygen -lf /etc/ssh/ssh_host_{kind}_key.pub"
    if expected is not None:
        if expected != seen:
            _refuse(f"the host's key is {seen}, not {expected} as given")
    elif not click.confirm(f"Is it the host's own (on the host, {on_host} prints it)?"):
        _refuse("the key was not confirmed")
    return key


def _remember(known_hosts: Path, name: str, key: paramiko.PKey) -> str:
    """Adds `key` to known_hosts for `name`, unless it is there; refuses another key of
    that type, read as the runs read the file."""
    key_type = key.get_name()
    if known_hosts.is_file():
        known = {k.get_name(): k for k in KNOWN_HOSTS.keys(str(known_hosts), name)}
        if key_type in known:
            if known[key_type].get_base64() == key.get_base64():
                return f"{known_hosts}: already knows this key"
            _refuse(
                f"{known_hosts} holds another {key_type} key for {name}: if the host's key"
                f" changed, remove it first (ssh-keygen -R '{name}' -f {known_hosts})"
            )
    known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    existing = known_hosts.read_text() if known_hosts.is_file() else ""
    separator = "" if not existing or existing.endswith("\n") else "\n"
    # public keys: readable by the service's user, whoever runs this
    descriptor = os.open(known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    with os.fdopen(descriptor, "a") as handle:
        handle.write(f"{separator}{name} {key_type} {key.get_base64()}\n")
    return f"{known_hosts}: added"


def _matching(value: str | None, rule: re.Pattern[str], shape: str) -> str | None:
    """`value` when the whole of it is of the shape `rule` allows: it goes into the
    authorized_keys line, where a quote or a space would add options or commands."""
    if value is not None and not rule.fullmatch(value):
        raise click.BadParameter(f"must be {shape} (letters, digits and ._/+-:@[])")
    return value


@click.group("hosts", short_help="Add a build host in one step.")
def hosts_group() -> None:
    """Add build hosts to the targets file."""


@hosts_group.command("add")
@click.argument("name")
@click.option("--host", required=True, help="The build host's address, as prunehook reaches it.")
@click.option(
    "--port",
    type=click.IntRange(PORTS.min, PORTS.max),
    help="The build host's SSH port. Default: [defaults]' port, else PRUNEHOOK_SSH_PORT, else 22.",
)
@click.option(
    "--user",
    help="Who prunehook logs in as. Default: [defaults]' user, else PRUNEHOOK_SSH_USER, else"
    " the user prunehook runs as: give it when the service runs as another user than this.",
)
@click.option(
    "--alias",
    "aliases",
    multiple=True,
    metavar="NAME",
    help="Another host value alerts use for it, e.g. node_exporter's instance (repeatable).",
)
@click.option(
    "--fingerprint",
    "expected",
    metavar="SHA256:...",
    help="The host key's fingerprint (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on the"
    " host): checked instead of asking; a mismatch writes nothing.",
)
@click.option(
    "--docker-host",
    metavar="URL",
    callback=lambda _, __, value: _matching(value, DAEMON_ADDRESS, "unix:///PATH, tcp://HOST:PORT"),
    help="The Docker socket on the host when not the default (rootless Docker, a second"
    " daemon), e.g. unix:///run/user/1000/docker.sock: the guard line carries it.",
)
@click.option(
    "--guard",
    default=GUARD,
    callback=lambda _, __, value: _matching(value, GUARD_PATH, "an absolute path"),
    show_default=True,
    help="Where prunehook-guard is installed on the host.",
)
def add_command(
    name: str,
    host: str,
    port: int | None,
    user: str | None,
    aliases: tuple[str, ...],
    expected: str | None,
    docker_host: str | None,
    guard: str,
) -> None:
    """Add the build host NAME: confirm its host key, add it to known_hosts, print the
    authorized_keys line for its guard, append its [targets.NAME] block to the targets file
    (PRUNEHOOK_TARGETS_FILE; made when missing, comments kept) and run its checks.

    Nothing is written when the name, host or an alias is another target's, when the key
    is not confirmed or its fingerprint is not --fingerprint. Exits 1 when refused or when
    a check fails (the host is added then: fix it and run prunehook check --target NAME).
    """
    if not is_name(name):
        _refuse(NAME_RULE)
    env = Env()
    env.read_env(DOTENV, recurse=False)
    file = _targets_file(env).resolve()  # a symlinked file is edited where it lies
    with _editing(file):
        target = _add(file, env, name, host, port, user, aliases, expected)
    click.echo(f"{file}: added [targets.{name}]")
    _print_authorized_keys(target, docker_host, guard)
    sys.exit(_check(name))


@contextlib.contextmanager
def _editing(file: Path) -> Iterator[None]:
    """One `hosts add` at a time per targets file: two that both read it would each
    replace it with their own addition, and one host would be lost."""
    file.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as held:
        try:
            folder = os.open(file.parent, os.O_RDONLY)
            held.callback(os.close, folder)
            fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _refuse(f"another prunehook hosts add is changing {file}; try again when it is done")
        except OSError as error:  # a folder one may not list, a file system without locks
            click.echo(f"note: cannot lock {file.parent} ({error.strerror}); going on", err=True)
        yield


def _add(
    file: Path,
    env: Env,
    name: str,
    host: str,
    port: int | None,
    user: str | None,
    aliases: Sequence[str],
    expected: str | None,
) -> Target:
    """The new target, once its key is confirmed and known and the file holds its block."""
    taken = _current_fleet(file).get(name)
    if taken is not None:
        _refuse(f"{name} is already a target ({taken.ssh})")
    if not file.is_file() and env.str(f"{PREFIX}SSH_HOST", "").strip():
        click.echo(
            f"note: with a targets file, {PREFIX}SSH_HOST's host is no target any more: add it"
            " too (prunehook hosts add), and unset the variable",
            err=True,
        )
    text = file.read_text() if file.is_file() else NEW_FILE
    separator = "\n" if text.endswith("\n") else "\n\n"
    candidate = _draft(file, f"{text}{separator}{target_block(name, host, port, user, aliases)}")
    try:
        target = _settings_with(str(candidate)).targets.fleet.get(name)
        if target is None:
            _refuse(f"the targets file with this host has no target {name}")
        key = _confirmed(target, expected)
        name_known = known_name(target.ssh.address, target.ssh.port)
        click.echo(_remember(target.ssh.known_hosts_path, name_known, key))
        os.replace(candidate, file)
    finally:
        candidate.unlink(missing_ok=True)
    return target


def _targets_file(env: Env) -> Path:
    """PRUNEHOOK_TARGETS_FILE, from the environment or .env."""
    path = env.str(FILE_VARIABLE, "").strip()
    if not path:
        _refuse(f"set {FILE_VARIABLE} to the targets file the host is added to")
    expanded = os.path.expanduser(path)
    if expanded.startswith("~"):  # a user this machine does not know: no folder to guess
        _refuse(f"{FILE_VARIABLE}: no home folder for {path.split('/')[0]}")
    return Path(expanded)


def _current_fleet(file: Path) -> Fleet:
    """The targets configured now: none while the targets file is still to be made."""
    if not file.is_file():
        return Fleet()
    try:
        settings, _ = load_settings(DOTENV)
    except ConfigError as error:
        click.echo(f"{error}\nfix the configuration first; nothing was written", err=True)
        sys.exit(2)
    return settings.targets.fleet


def _draft(file: Path, text: str) -> Path:
    """`text` in a private file beside `file`, to be checked and then moved into place."""
    descriptor, name = tempfile.mkstemp(prefix=f".{file.name}.", dir=file.parent)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
            # who may read it stays as it was (the service's user or group, when an
            # operator runs this as root); a new file is the folder's group's to read
            before = file.stat() if file.is_file() else None
            folder = file.parent.stat()
            mode = before.st_mode & 0o777 if before else 0o640
            owner = (before.st_uid, before.st_gid) if before else (-1, folder.st_gid)
            os.fchmod(handle.fileno(), mode)
            with contextlib.suppress(PermissionError):  # not root: the file stays ours
                os.fchown(handle.fileno(), *owner)
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


def _print_authorized_keys(target: Target, docker_host: str | None, guard: str) -> None:
    try:
        key = load_private_key(target.ssh)
    except SSHFailure as failure:
        click.echo(f"cannot read the key to print its authorized_keys line: {failure}", err=True)
        return
    command = " ".join([guard, *guard_options(target.policy, docker_host)])
    line = f'restrict,command="{command}" {key.get_name()} {key.get_base64()} prunehook'
    click.echo(
        f"\nOn {target.ssh.address}, install contrib/prunehook-guard as {guard} and add this"
        f" line to ~{target.ssh.user}/.ssh/authorized_keys:\n\n{line}\n"
    )


def _check(name: str) -> int:
    """The new target's checks, as `prunehook check --target NAME` runs them, with the
    settings read afresh."""
    from webhook import create_app
    from webhook.cli.check import checked
    from webhook.web.context import prunehook

    click.echo(f"checking {name}:")
    with create_app().app_context():
        return checked(prunehook(), [name])
