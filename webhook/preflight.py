"""`flask --app wsgi check`: what an operator runs after configuring, one line per check."""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from webhook.config import Settings
from webhook.core.command import (
    BUILDX_INSPECT,
    DOCKER_ROOT_DIR,
    SYSTEM_DF,
    build_keep_storage_command,
)
from webhook.core.disk import Measure, parse_gc_policy, version_before
from webhook.core.forecast import in_words
from webhook.core.outcome import ErrorKind, Step, Versions, last_line
from webhook.core.planner import Next, plan
from webhook.core.sizes import human_size
from webhook.core.targets import PrunePolicy, Target, is_docker_root
from webhook.remote.session import Session, Stopped
from webhook.remote.ssh import KNOWN_HOSTS, SSHFailure, SSHRunner, known_name, load_private_key
from webhook.runs import PROBE_TIMEOUT_S, RunSteps
from webhook.store import Store, StoreUnavailable, TargetRecord

# the variable a docker_root fix names (a targets file names the key itself)
ROOT_VARIABLE = "PRUNEHOOK_DOCKER_ROOT"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    # worth knowing, and no failure: WARN, and `flask check` still exits 0
    warning: bool = False

    def line(self) -> str:
        status = "FAIL" if not self.ok else "WARN" if self.warning else "PASS"
        text = f"{status}  {self.name:<12} {_shown(self.detail)}"
        if not self.fix or (self.ok and not self.warning):
            return text
        return f"{text}\n      fix: {_shown(self.fix)}"


def _shown(text: str) -> str:
    """A host's own words made safe for a terminal: a control byte (an ANSI escape among
    them) is written as its escape, never sent."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _key_mode(key_file: str) -> Check | None:
    """A key file others may read, as OpenSSH's client refuses it: a warning."""
    if not key_file:
        return None
    mode = Path(os.path.expanduser(key_file)).stat().st_mode & 0o777
    if not mode & 0o077:
        return None
    detail = f"{key_file} loads, but its mode {mode:o} lets others read it"
    return Check("key", True, detail, f"chmod 600 {shlex.quote(key_file)}", warning=True)


def _known_host(target: Target) -> Check:
    endpoint = target.ssh
    path = endpoint.known_hosts_path
    address, known = shlex.quote(endpoint.address), shlex.quote(str(path))
    scan = f"ssh-keyscan -p {endpoint.port} {address} >> {known}"
    fix = f"{scan}  (then compare the fingerprint with the host's own)"
    if not path.is_file():
        return Check("host key", False, f"{path} does not exist", fix)
    name = known_name(endpoint.address, endpoint.port)
    if not KNOWN_HOSTS.keys(str(path), name):
        return Check("host key", False, f"{name} is not in {path}", fix)
    return Check("host key", True, f"{name} is in {path}")


def _docker(target: Target, runner: SSHRunner) -> Iterator[Check]:
    """Log in, then the read-only probes a run makes, on one connection, as a run makes them."""
    with runner.session(target) as session:
        steps = RunSteps(session, target)
        try:
            versions = steps.versions()
        except Stopped:
            failure = steps.failure
            assert failure is not None
            fix = "the host must accept this key (last_error_kind: docs/status.md)"
            yield Check("ssh login", False, f"{failure.error_kind}: {failure.error}", fix)
            return
        yield Check("ssh login", True, f"{target.ssh} accepted the key")
        if versions.docker is None:
            yield _no_docker(target, steps.steps[0])
            return
        builder = (
            f"buildx {versions.buildx}"
            if versions.buildx
            else "no buildx: the classic builder prunes"
        )
        yield Check("docker", True, f"Docker {versions.docker} ({builder}) answers on the host")
        steps.known = versions  # the cache is measured as the runs will, knowing them
        try:
            yield from _disk(steps)
        except Stopped:
            failure = steps.failure
            yield Check("disk", False, f"the connection was lost: {failure and failure.error}")
            return
        yield _gc(session, versions)


def _no_docker(target: Target, probed: Step) -> Check:
    if probed.rc == 126 and "prunehook-guard" in probed.stderr_tail:
        return Check(
            "docker",
            False,
            "the host's prunehook-guard denies the read-only probes: it is older than"
            " this prunehook, so runs cannot measure the disk",
            "install this contrib/prunehook-guard on the host (same authorized_keys line)",
        )
    if probed.error_kind in (ErrorKind.TIMEOUT, ErrorKind.EXEC_TIMEOUT):
        return Check("docker", False, "docker version did not answer", "is dockerd hung?")
    last = last_line(probed.stderr_tail) or "no output"
    fix = f"make {target.ssh.user} able to run docker (docker group) and start dockerd"
    return Check("docker", False, f"rc={probed.rc}: {last}", fix)


def _disk(steps: RunSteps) -> Iterator[Check]:
    """The disk and the cache as a run would measure them now, and stage 2's bound."""
    root = steps.target.policy.docker_root
    now = steps.measure("now")
    problems = {note.partition(":")[0]: note.partition(": ")[2] for note in steps.notes}
    if now.disk_size is None or now.disk_free is None:
        why = problems.get("disk now", "")
        yield Check("disk", False, f"df {root}: {why}", _root_fix(steps.session))
    else:
        share = 100 * now.disk_free / now.disk_size if now.disk_size else 0.0
        shown = f"{human_size(now.disk_free)} free of {human_size(now.disk_size)} ({share:.1f}%)"
        yield Check("disk", True, f"{root}: {shown}")
    if now.cache is None:
        why = problems.get("cache now", "")
        yield Check("cache", False, f"{SYSTEM_DF}: {why}", "is dockerd answering?")
    else:
        probe = steps.cache_probe or SYSTEM_DF
        yield Check("cache", True, f"build cache {human_size(now.cache)} ({probe})")
    yield _stage_2(steps.target.policy, now)


# stage 2 is opt-in on the host: a stolen key could otherwise prune fresh cache
GUARD_STAGE_2 = (
    "the host's prunehook-guard needs --allow-keep-storage (or --min-keep-storage BYTES)"
)


def _stage_2(policy: PrunePolicy, now: Measure) -> Check:
    """What stage 2 would do now, for a policy with goals."""
    goals = policy.goals
    if not goals.any:
        return Check("stage 2", True, "no goal set (max_cache, min_free): the age prune alone")
    wanted = []
    if goals.max_cache is not None:
        wanted.append(f"cache at most {human_size(goals.max_cache)}")
    if goals.min_free is not None:
        need = goals.min_free.bytes_of(now.disk_size)
        shown = f" = {human_size(need)}" if need is not None and goals.min_free.percent else ""
        wanted.append(f"free at least {goals.min_free}{shown}")
    aims = " and ".join(wanted)
    step = plan(goals, now)
    if step.next == Next.DONE:
        detail = f"goals met now ({aims}): no stage 2 would run"
    elif step.next == Next.STAGE_2:
        assert step.keep_storage_bytes is not None
        command = build_keep_storage_command(step.keep_storage_bytes, policy.prune_all)
        detail = f"a goal is missed now ({aims}): after the age prune, `{command}`"
    elif step.next == Next.NO_CACHE:
        detail = f"a goal is missed now ({aims}), and no cache is left to prune"
    else:
        detail = f"cannot tell ({aims}): the disk or cache could not be measured"
    warning = step.next not in (Next.DONE, Next.STAGE_2)
    return Check("stage 2", True, f"{detail}; {GUARD_STAGE_2}", warning=warning)


def _root_fix(session: Session) -> str:
    """Where Docker says its data is, as the docker_root to set; or how to ask it."""
    asked = session.execute(DOCKER_ROOT_DIR, PROBE_TIMEOUT_S)
    found = last_line(asked.stdout_tail) if asked.rc == 0 else ""
    if is_docker_root(found):
        return f'Docker keeps its data in {found}: set docker_root = "{found}" (or {ROOT_VARIABLE})'
    return (
        f"set docker_root ({ROOT_VARIABLE}) to what `docker info --format"
        " {{.DockerRootDir}}` prints on the host (a guard older than this prunehook denies it)"
    )


def _gc(session: Session, versions: Versions) -> Check:
    """What can be known of BuildKit's own garbage collection."""
    version = versions.docker
    if versions.buildx:
        inspected = session.execute(BUILDX_INSPECT, PROBE_TIMEOUT_S)
        rules = parse_gc_policy(inspected.stdout_tail) if inspected.rc == 0 else []
        if rules:
            return Check("buildkit gc", True, "docker buildx inspect: " + " | ".join(rules))
        detail = "docker buildx inspect shows no GC policy: BuildKit may keep its cache for ever"
        return Check("buildkit gc", True, detail, warning=True)
    if version_before(version, 28, 2) is False:
        detail = f"Docker {version} runs BuildKit's GC by default"
        return Check("buildkit gc", True, f"{detail} (no buildx here to show its policy)")
    detail = (
        f"Docker {version}: engines before 28.2 keep BuildKit's GC off unless daemon.json"
        " configures it (builder.gc); it runs only after builds, so prunehook's prunes are"
        " what keep an idle host's cache in check"
    )
    return Check("buildkit gc", True, detail, warning=True)


def _kill_switch(settings: Settings) -> Check:
    if settings.server.enabled:
        return Check("enabled", True, "prunes run when a trigger is due")
    # the rest is still checked: an operator turning prunes back on wants to know it will work
    detail = "PRUNEHOOK_ENABLED is false: prunes are disabled, every trigger answers `disabled`"
    return Check("enabled", False, detail, "set PRUNEHOOK_ENABLED=true when prunes should run")


def _target_checks(target: Target, runner: SSHRunner) -> Iterator[Check]:
    yield Check("target", True, f"{target.name} ({target.ssh})")
    try:
        load_private_key(target.ssh)
        where = target.ssh.key_file or "PRUNEHOOK_SSH_KEY"
        yield _key_mode(target.ssh.key_file) or Check("key", True, f"{where} loads")
    except SSHFailure as failure:
        fix = "ssh-keygen -t ed25519 -N '' -f ~/.ssh/prunehook; set PRUNEHOOK_SSH_KEY_FILE"
        yield Check("key", False, str(failure), fix)
        return
    known = _known_host(target)
    yield known
    if known.ok:
        yield from _docker(target, runner)


def _forecast(target: Target, records: dict[str, TargetRecord] | None, now: float) -> Check | None:
    """A watched target's forecast as the last measure drew it (its row: no probe).
    `records` is None when the database check failed, which says why."""
    every = target.policy.watch_interval_s
    if every <= 0:
        return None
    if records is None:
        said = "not read, as the database check failed"
        return Check("forecast", True, f"{target.name}: {said}", warning=True)
    record = records.get(target.name)
    said = in_words(record.forecast if record else None, now)
    return Check("forecast", True, f"{target.name}: {said}; measured every {every:g} s")


def _reading(settings: Settings) -> Check:
    """Whether /status and /metrics are open. Where the service listens is the command line's
    (the Procfile binds 0.0.0.0, `make run` 127.0.0.1), which this command cannot see."""
    if settings.auth.status_token:
        return Check("status", True, "PRUNEHOOK_STATUS_TOKEN is set: /status and /metrics need it")
    why = (
        "a database URL is set, so replicas serve beyond this machine"
        if settings.server.database_url
        else "the Procfile and Kubernetes serve on every interface (0.0.0.0)"
    )
    detail = f"/status, its pages and /metrics are open to anyone who can reach them: {why}"
    fix = "set PRUNEHOOK_STATUS_TOKEN (openssl rand -hex 32) unless only 127.0.0.1 can reach it"
    return Check("status", True, detail, fix, warning=True)


def _database(
    settings: Settings, store: Store, watched: bool
) -> tuple[Check, dict[str, TargetRecord] | None]:
    """Whether the database answers, and every target's row when a target is watched (its
    forecast is shown): read once for them all; None when the check failed."""
    where = "PostgreSQL" if settings.server.database_url else f"SQLite {settings.server.db_path}"
    try:
        store.ping()  # the schema made or migrated first
        records = store.target_records() if watched else {}
    except StoreUnavailable as error:
        fix = "check the folder of PRUNEHOOK_DB_PATH is writable and its disk not full"
        if settings.server.database_url:
            fix = "check PRUNEHOOK_DATABASE_URL and that the server is up"
        return Check("database", False, f"{where}: {error}", fix), None
    return Check("database", True, f"{where} answers"), records


def run_checks(
    settings: Settings,
    targets: Sequence[Target],
    token_source: str,
    warnings: list[str],
    store: Store | None = None,
    clock: Callable[[], float] = time.time,
) -> list[Check]:
    """The service's checks, then each target's (a failed target does not stop the next)."""
    checks = [
        Check("config", True, "valid" + (f", {len(warnings)} warning(s)" if warnings else "")),
        Check("token", True, token_source),
        _reading(settings),
    ]
    checks += [Check("config", True, warning, warning=True) for warning in warnings]
    checks.append(_kill_switch(settings))
    records: dict[str, TargetRecord] | None = None
    if store is not None:
        watched = any(target.policy.watch_interval_s > 0 for target in targets)
        database, records = _database(settings, store, watched)
        checks.append(database)
    if not targets:
        fix = "set PRUNEHOOK_SSH_HOST (and _SSH_USER, _SSH_KEY_FILE) in .env, or"
        fix += " PRUNEHOOK_TARGETS_FILE"
        return [*checks, Check("target", False, "no build host", fix)]
    runner = SSHRunner()
    for target in targets:
        checks += _target_checks(target, runner)
        forecast = _forecast(target, records, clock()) if store is not None else None
        if forecast is not None:
            checks.append(forecast)
    return checks


def token_source(settings: Settings, instance_path: str) -> str:
    generated = Path(instance_path) / "hook-token"
    if generated.is_file() and generated.read_text().strip() == settings.auth.token:
        return f"generated, kept in {generated} (set PRUNEHOOK_TOKEN to choose one)"
    return "PRUNEHOOK_TOKEN is set"
