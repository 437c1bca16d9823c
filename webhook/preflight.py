"""`flask --app wsgi check`: what an operator runs after configuring, one line per check."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from webhook.config import Settings
from webhook.core.targets import Target
from webhook.remote.ssh import SSHFailure, SSHRunner, load_private_key
from webhook.store import Store, StoreUnavailable

DOCKER_VERSION = "docker version --format '{{.Server.Version}}'"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{'PASS' if self.ok else 'FAIL'}  {self.name:<12} {self.detail}"
        return text if self.ok or not self.fix else f"{text}\n      fix: {self.fix}"


def _known_host(target: Target) -> Check:
    import paramiko

    endpoint = target.ssh
    path = endpoint.known_hosts_path
    scan = f"ssh-keyscan -p {endpoint.port} {endpoint.address} >> {path}"
    fix = f"{scan}  (then compare the fingerprint with the host's own)"
    if not path.is_file():
        return Check("host key", False, f"{path} does not exist", fix)
    name = endpoint.address
    if endpoint.port != 22:
        name = f"[{endpoint.address}]:{endpoint.port}"
    if paramiko.HostKeys(str(path)).lookup(name) is None:
        return Check("host key", False, f"{name} is not in {path}", fix)
    return Check("host key", True, f"{name} is in {path}")


def _docker(target: Target, runner: SSHRunner) -> Iterator[Check]:
    execution = runner.run(target, DOCKER_VERSION)
    if not execution.logged_in:
        fix = "see last_error_kind in the README; the host must accept this key"
        yield Check("ssh login", False, f"{execution.error_kind}: {execution.error}", fix)
        return
    yield Check("ssh login", True, f"{target.ssh} accepted the key")
    if execution.rc == 0:
        version = execution.stdout_tail.strip() or "?"
        yield Check("docker", True, f"Docker {version} answers on the host (read-only check)")
    elif execution.rc == 126 and "prunehook-guard" in execution.stderr_tail:
        detail = "the key is pinned to prunehook-guard (good): Docker is checked by the prune"
        yield Check("docker", True, detail)
    elif execution.error_kind in ("timeout", "exec_timeout"):
        yield Check("docker", False, "docker version did not answer", "is dockerd hung?")
    else:
        last = (execution.stderr_tail.strip().splitlines() or ["no output"])[-1]
        fix = f"make {target.ssh.user} able to run docker (docker group) and start dockerd"
        yield Check("docker", False, f"rc={execution.rc}: {last}", fix)


def _kill_switch(settings: Settings) -> Check:
    if settings.enabled:
        return Check("enabled", True, "prunes run when a trigger is due")
    # the rest is still checked: an operator turning prunes back on wants to know it will work
    detail = "PRUNEHOOK_ENABLED is false: prunes are disabled, every trigger answers `disabled`"
    return Check("enabled", False, detail, "set PRUNEHOOK_ENABLED=true when prunes should run")


def _target_checks(target: Target, runner: SSHRunner) -> Iterator[Check]:
    yield Check("target", True, f"{target.name} ({target.ssh})")
    try:
        load_private_key(target.ssh)
        where = target.ssh.key_file or "PRUNEHOOK_SSH_KEY"
        yield Check("key", True, f"{where} loads")
    except SSHFailure as failure:
        fix = "ssh-keygen -t ed25519 -N '' -f ~/.ssh/prunehook; set PRUNEHOOK_SSH_KEY_FILE"
        yield Check("key", False, str(failure), fix)
        return
    known = _known_host(target)
    yield known
    if known.ok:
        yield from _docker(target, runner)


def _database(settings: Settings, store: Store | None) -> Check | None:
    if store is None:
        return None
    where = "PostgreSQL" if settings.database_url else f"SQLite {settings.db_path}"
    try:
        store.ensure_schema()
        store.ping()
    except StoreUnavailable as error:
        fix = (
            "check PRUNEHOOK_DATABASE_URL and that the server is up"
            if settings.database_url
            else ("check the folder of PRUNEHOOK_DB_PATH is writable and its disk not full")
        )
        return Check("database", False, f"{where}: {error}", fix)
    return Check("database", True, f"{where} answers")


def run_checks(
    settings: Settings,
    targets: Sequence[Target],
    token_source: str,
    warnings: list[str],
    store: Store | None = None,
) -> list[Check]:
    """The service's checks, then each target's (a failed target does not stop the next)."""
    checks = [
        Check("config", True, "valid" + (f", {len(warnings)} warning(s)" if warnings else "")),
        Check("token", True, token_source),
    ]
    checks += [Check("config", True, f"warning: {warning}") for warning in warnings]
    checks.append(_kill_switch(settings))
    database = _database(settings, store)
    if database is not None:
        checks.append(database)
    if not targets:
        fix = "set PRUNEHOOK_SSH_HOST (and _SSH_USER, _SSH_KEY_FILE) in .env, or"
        fix += " PRUNEHOOK_TARGETS_FILE"
        return [*checks, Check("target", False, "no build host", fix)]
    runner = SSHRunner()
    for target in targets:
        checks += _target_checks(target, runner)
    return checks


def token_source(settings: Settings, instance_path: str) -> str:
    generated = Path(instance_path) / "hook-token"
    if generated.is_file() and generated.read_text().strip() == settings.token:
        return f"generated, kept in {generated} (set PRUNEHOOK_TOKEN to choose one)"
    return "PRUNEHOOK_TOKEN is set"
