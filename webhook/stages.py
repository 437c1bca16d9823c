"""One run on a build host: measure, prune in stages until the goals are met, measure again.

DESIGN.md, "Disk-aware pruning". Over one session (one SSH connection):
1. probe the disk (`df`) and the build cache (`docker system df`); Docker's and buildx's
   versions the first time this process runs a target;
2. stage 1, the age prune, as always;
3. probe again; when a goal is set and still missed, stage 2 prunes the cache down to the
   bound `keep_storage_bytes` computes, then probe once more.
What to do next is always the core's pure functions' answer (`assess`,
`keep_storage_bytes`, `summarize`); this module only runs the commands they name. A probe
that fails is noted and the run goes on with what is known; a connection that is lost
ends the run; a run whose lease was taken over stops before its next command.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from webhook.core.command import (
    BUILDX_VERSION,
    DOCKER_VERSION,
    SYSTEM_DF,
    build_df_command,
    build_keep_storage_command,
    build_prune_command,
)
from webhook.core.disk import (
    Measure,
    assess,
    keep_storage_bytes,
    parse_build_cache,
    parse_buildx_version,
    parse_df,
    parse_server_version,
)
from webhook.core.outcome import (
    HOST_TIME_LIMIT_RC,
    ErrorKind,
    Execution,
    RunOutcome,
    Step,
    summarize,
)
from webhook.core.sizes import human_size
from webhook.core.targets import Target

# a probe reads what Docker and the kernel already know; a long wait means Docker is stuck
PROBE_TIMEOUT_S = 30.0
# probes a run may make: disk and cache before, after stage 1 and after stage 2; versions
MAX_PROBES = 8


def run_limit_s(timeout_s: float) -> float:
    """The longest a run's commands may take: two stages and every probe at its limit."""
    return 2 * timeout_s + MAX_PROBES * min(timeout_s, PROBE_TIMEOUT_S)


class Session(Protocol):
    """Commands of one run on one connection (webhook.remote.ssh.SSHSession)."""

    @property
    def alive(self) -> bool: ...

    def run(self, command: str, timeout_s: float | None = None) -> Execution: ...

    def close(self) -> None: ...


OpenSession = Callable[[Target], Session]
RunCommand = Callable[[Target, str], Execution]
# before each command: False when the run no longer owns its target (its lease was taken)
KeepGoing = Callable[[], bool]

# failures after which no later command of the session can run
_CONNECTION_LOST = {ErrorKind.SSH_ERROR, ErrorKind.EXEC_TIMEOUT}


class CommandSession:
    """A session over a runner of single commands (the service tests' fake host): each
    command is one call; after a connection failure, later commands are not tried."""

    def __init__(self, run_command: RunCommand, target: Target):
        self.run_command = run_command
        self.target = target
        self._failed: Execution | None = None

    @property
    def alive(self) -> bool:
        return self._failed is None

    def run(self, command: str, timeout_s: float | None = None) -> Execution:
        if self._failed is not None:
            return self._failed
        execution = self.run_command(self.target, command)
        if not execution.logged_in or execution.error_kind in _CONNECTION_LOST:
            self._failed = execution
        return execution

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class Versions:
    docker: str | None
    buildx: str | None


class Stopped(Exception):
    """The run cannot go on: its connection is lost, or another run owns the target."""


def _problem(execution: Execution) -> str:
    """Why a probe told nothing, in a line."""
    if execution.error:
        return execution.error
    lines = [line.strip() for line in execution.stderr_tail.splitlines() if line.strip()]
    return f"rc={execution.rc}: {lines[-1][:300]}" if lines else f"rc={execution.rc}"


def _docker_stuck(execution: Execution) -> bool:
    return execution.error_kind == ErrorKind.TIMEOUT or execution.rc == HOST_TIME_LIMIT_RC


@dataclass
class _Run:
    """The state of one run while its steps go by."""

    session: Session
    target: Target
    keep_going: KeepGoing
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stages: list[RunOutcome] = field(default_factory=list)
    before: Measure = field(default_factory=Measure)
    after: Measure = field(default_factory=Measure)
    # stage 2's --keep-storage, once it is sent
    keep: int | None = None
    # Docker did not answer a probe or stage in time: later probes of Docker are skipped
    docker_stuck: bool = False

    @property
    def probe_limit(self) -> float:
        return min(self.target.policy.timeout_s, PROBE_TIMEOUT_S)

    def command(self, name: str, command: str, limit: float) -> Execution:
        if not self.keep_going():
            self.notes.append(f"stopped before {name}: a newer run owns the target")
            raise Stopped
        execution = self.session.run(command, limit)
        self.steps.append(Step.of(name, command, execution))
        return execution

    def probe_failed(self, name: str, why: str) -> None:
        self.notes.append(f"{name}: {why}")

    def docker_probe(self, name: str, command: str) -> Execution | None:
        if self.docker_stuck:
            self.notes.append(f"{name}: not probed, Docker did not answer earlier in this run")
            return None
        execution = self.command(name, command, self.probe_limit)
        self.docker_stuck = self.docker_stuck or _docker_stuck(execution)
        return execution

    def measure(self, when: str) -> Measure:
        """The disk and the cache now; None for what could not be read (noted)."""
        name = f"disk {when}"
        execution = self.command(
            name, build_df_command(self.target.policy.docker_root), self.probe_limit
        )
        if not self.session.alive:
            raise Stopped
        disk = parse_df(execution.stdout_tail) if execution.rc == 0 else None
        if disk is None:
            why = _problem(execution) if execution.rc != 0 else "df's output not understood"
            self.probe_failed(name, why)
        cache = None
        name = f"cache {when}"
        listed = self.docker_probe(name, SYSTEM_DF)
        if not self.session.alive:
            raise Stopped
        if listed is not None:
            found = parse_build_cache(listed.stdout_tail) if listed.rc == 0 else None
            if found is None:
                why = _problem(listed) if listed.rc != 0 else "no Build Cache row in its table"
                self.probe_failed(name, why)
            cache = found[1] if found else None
        size, free = disk if disk else (None, None)
        return Measure(size, free, cache)

    def versions(self) -> Versions:
        server = self.docker_probe("docker version", DOCKER_VERSION)
        docker = parse_server_version(server.stdout_tail) if server else None
        if server is not None and docker is None:
            self.probe_failed("docker version", _problem(server))
        buildx = None
        if server is not None and self.session.alive:
            found = self.docker_probe("buildx version", BUILDX_VERSION)
            # no buildx is a fact to record, not a failure: the classic builder prunes
            buildx = parse_buildx_version(found.stdout_tail) if found else None
        return Versions(docker, buildx)

    def stage(self, name: str, command: str) -> RunOutcome:
        execution = self.command(name, command, self.target.policy.timeout_s)
        self.docker_stuck = self.docker_stuck or _docker_stuck(execution)
        return summarize(execution)


class StagedRuns:
    """Runs each claimed run's stages; remembers each target's versions in this process."""

    def __init__(self, open_session: OpenSession, clock: Callable[[], float] = time.monotonic):
        self.open_session = open_session
        self.clock = clock
        self._versions: dict[str, Versions] = {}
        self._lock = threading.Lock()

    def run(self, target: Target, keep_going: KeepGoing) -> RunOutcome:
        started = self.clock()
        session = self.open_session(target)
        try:
            with self._lock:
                known = self._versions.get(target.name)
            run = _Run(session, target, keep_going)
            outcome = self._stages(run, known)
        finally:
            session.close()
        return _with_duration(outcome, self.clock() - started)

    def _stages(self, run: _Run, known: Versions | None) -> RunOutcome:
        policy = run.target.policy
        versions = known
        try:
            run.before = run.measure("before")
            if versions is None:
                versions = run.versions()
                if versions.docker is not None:
                    with self._lock:
                        self._versions[run.target.name] = versions
            age_prune = build_prune_command(policy.until, policy.prune_all)
            run.stages.append(run.stage("stage 1", age_prune))
            if not run.session.alive:
                raise Stopped
            # measured after a failed stage 1 too: the run still says where the disk stands
            run.after = run.measure("after stage 1")
            if run.stages[0].ok:
                self._stage_2(run)
        except Stopped:
            pass
        return _outcome(run, versions)

    @staticmethod
    def _stage_2(run: _Run) -> None:
        """Stage 2 when a goal is still missed after stage 1, then the disk again."""
        policy = run.target.policy
        standing = assess(policy.goals, run.after)
        if standing.met is None and policy.goals.any:
            run.notes.append("a goal could not be measured after stage 1: no stage 2")
        if standing.met is not False:
            return
        run.keep = keep_storage_bytes(policy.goals, run.after)
        if run.keep is None:
            run.notes.append(_no_bound(run.after))
            return
        command = build_keep_storage_command(run.keep, policy.prune_all)
        run.stages.append(run.stage("stage 2", command))
        if not run.session.alive:
            raise Stopped
        run.after = run.measure("after stage 2")


def _no_bound(measure: Measure) -> str:
    if measure.cache == 0:
        return "stage 2 not run: no build cache is left to prune"
    return "stage 2 not run: the cache size is unknown, so no bound can be computed"


def _stage_total(stages: list[RunOutcome]) -> tuple[str | None, int | None]:
    """Docker's reclaimed space over the stages: as printed for one, summed for more."""
    sizes = [stage.reclaimed_bytes for stage in stages if stage.reclaimed_bytes is not None]
    if not sizes:
        return None, None
    if len(stages) == 1:
        return stages[0].reclaimed, stages[0].reclaimed_bytes
    return human_size(sum(sizes)), sum(sizes)


def _outcome(run: _Run, versions: Versions | None) -> RunOutcome:
    stages, before, after = run.stages, run.before, run.after
    goals = run.target.policy.goals
    if stages:
        failed = next((stage for stage in stages if not stage.ok), None)
        last = stages[-1]
        reclaimed, reclaimed_bytes = _stage_total(stages)
        head = RunOutcome(
            ok=failed is None,
            rc=last.rc,
            reclaimed=reclaimed,
            reclaimed_bytes=reclaimed_bytes,
            error_kind=failed.error_kind if failed else None,
            error=failed.error if failed else None,
            duration_s=0.0,
            stdout_tail=last.stdout_tail,
            stderr_tail=last.stderr_tail,
            # the host refused for now (its own interval): when to try again
            retry_after_s=failed.retry_after_s if failed else None,
        )
    else:
        # no stage ran: the connection failed (or was taken over) before the first
        head = _unstarted(run)
    freed = None
    if before.disk_free is not None and after.disk_free is not None:
        freed = after.disk_free - before.disk_free
    standing = assess(goals, after)
    return replace(
        head,
        steps=tuple(run.steps),
        notes=tuple(run.notes),
        freed_bytes=freed,
        disk_size=after.disk_size if after.disk_size is not None else before.disk_size,
        disk_free_before=before.disk_free,
        disk_free_after=after.disk_free,
        cache_before=before.cache,
        cache_after=after.cache,
        goal_met=standing.met if stages else None,
        free_short_bytes=standing.free_short if stages else None,
        cache_over_bytes=standing.cache_over if stages else None,
        keep_storage_bytes=run.keep if len(stages) > 1 else None,
        docker_version=versions.docker if versions else None,
        buildx_version=versions.buildx if versions else None,
    )


def _unstarted(run: _Run) -> RunOutcome:
    if run.steps:
        last = run.steps[-1]
        execution = Execution(
            last.rc, last.stdout_tail, last.stderr_tail, 0.0, last.error_kind, last.error
        )
        outcome = summarize(execution)
        if not outcome.ok:
            return outcome
    why = run.notes[-1] if run.notes else "the run ended before its first stage"
    return summarize(Execution(None, "", "", 0.0, ErrorKind.INTERNAL, why))


def _with_duration(outcome: RunOutcome, seconds: float) -> RunOutcome:
    return replace(outcome, duration_s=round(seconds, 3))
