"""Running claimed prunes: a pool of `max_parallel` threads, the leases of the runs this
process holds, each run's probes and stages over one session, and recording what it did.

DESIGN.md, "Disk-aware pruning". Over one session (one SSH connection) a run:
1. measures the disk (`df`) and the build cache (`docker buildx du` where the target is known
   to have buildx, else `docker system df`); Docker's and buildx's versions the first time
   this process runs a target (kept in `HostAccess.versions`, which the watch reads too);
2. runs stage 1, the age prune, as always;
3. measures again; while a goal is missed, stage 2 prunes the cache down to the planner's
   bound, and the run measures once more.
What to do next is always the core's pure answer (`plan`, `summarize`, `report`); this
module only sends the commands they name. A probe that fails is noted and the run goes on
with what is known; a lost connection ends the run; a run whose lease was taken over
stops before its next command.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace

from webhook.core.command import (
    BUILDX_DU,
    BUILDX_VERSION,
    DOCKER_VERSION,
    SYSTEM_DF,
    build_df_command,
    build_keep_storage_command,
    build_prune_command,
)
from webhook.core.disk import (
    Goals,
    Measure,
    parse_build_cache,
    parse_buildx_du,
    parse_buildx_version,
    parse_df,
    parse_server_version,
)
from webhook.core.outcome import (
    HOST_TIME_LIMIT_RC,
    ErrorKind,
    Execution,
    RunOutcome,
    StageResult,
    Step,
    Versions,
    internal_failure,
    internal_outcome,
    last_line,
    report,
    summarize,
)
from webhook.core.planner import Next, critical_aim, over_critical, plan, unconfirmed
from webhook.core.targets import Target
from webhook.listeners import tell
from webhook.pool import Pool
from webhook.remote.session import OpenSession, Session, Stopped
from webhook.store import Store, StoreUnavailable

log = logging.getLogger(__name__)

# a probe reads what Docker and the kernel already know; a long wait means Docker is stuck
PROBE_TIMEOUT_S = 30.0
# probes a run may make: disk and cache before, after stage 1 and after stage 2; versions.
# A run asks `docker buildx du` only when it starts with the versions known (and so skips
# their two probes), and at most once more than that when it fails (`RunSteps.cache`)
MAX_PROBES = 8
FINISH_ATTEMPTS = 10
FINISH_BACKOFF_S = 1.0
# how often the leases this process holds are renewed, at most
RENEW_EVERY_S = 5.0

FinishedListener = Callable[[Target, RunOutcome], object]


def probe_limit_s(target: Target) -> float:
    return min(target.policy.timeout_s, PROBE_TIMEOUT_S)


def run_limit_s(target: Target) -> float:
    """The longest one run may take: connecting, every probe and both stages at their
    limits, and recording it through a store that is briefly down. `?wait=1` callers and
    gunicorn's graceful stop wait this long."""
    commands = 2 * target.policy.timeout_s + MAX_PROBES * probe_limit_s(target)
    recording = FINISH_BACKOFF_S * FINISH_ATTEMPTS * (FINISH_ATTEMPTS + 1) / 2
    return commands + 3 * target.ssh.connect_timeout_s + recording


def problem(execution: Execution) -> str:
    """Why a command told nothing, in a line."""
    if execution.error:
        return execution.error
    line = last_line(execution.stderr_tail, 300)
    return f"rc={execution.rc}: {line}" if line else f"rc={execution.rc}"


@dataclass(frozen=True)
class HostAccess:
    """What runs and the watch's measures reach the hosts and their state through: the
    store, a session per target, the clock, and each target's Docker and buildx versions as
    the runs last learned them (their first probes): runs skip those probes once known, and
    runs and measures ask `docker buildx du` for the cache where buildx is known to be. The
    parts are fixed; `versions` is one dict the runs write and the measures read."""

    store: Store
    open_session: OpenSession
    clock: Callable[[], float]
    versions: dict[str, Versions] = field(default_factory=dict)


@dataclass
class RunSteps:
    """The commands of one run on one session, as they go by: each kept as a step, every
    probe's failure noted. `flask check` measures through it too."""

    session: Session
    target: Target
    # before each command: False when the run no longer owns its target
    keep_going: Callable[[], bool] = lambda: True
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # what ended the run before a stage could say it (the connection was lost)
    failure: StageResult | None = None
    # Docker did not answer a probe or stage in time: later probes of Docker are skipped
    docker_stuck: bool = False
    # what the target runs, known before these steps began: with buildx, `measure` asks
    # `docker buildx du` (versions learned by these steps change nothing: MAX_PROBES)
    known: Versions | None = None
    # the probe that last gave the cache's size
    cache_probe: str | None = None
    # `docker buildx du` failed in this run: later measures go to `docker system df` at once
    buildx_du_failed: bool = False

    def command(self, name: str, command: str, limit: float) -> Execution:
        """Send one command; the run stops here when it lost its target or its connection."""
        if not self.keep_going():
            self.notes.append(f"stopped before {name}: a newer run owns the target")
            raise Stopped
        execution = self.session.execute(command, limit)
        self.steps.append(Step.of(name, command, execution))
        stuck = execution.error_kind == ErrorKind.TIMEOUT or execution.rc == HOST_TIME_LIMIT_RC
        self.docker_stuck = self.docker_stuck or stuck
        if not self.session.alive:
            self.failure = summarize(execution)
            raise Stopped
        return execution

    def docker_probe(self, name: str, command: str) -> Execution | None:
        if self.docker_stuck:
            self.notes.append(f"{name}: not probed, Docker did not answer earlier in this run")
            return None
        return self.command(name, command, probe_limit_s(self.target))

    def measure(self, when: str) -> Measure:
        """The disk and the cache now; None for what could not be read (noted)."""
        name = f"disk {when}"
        df = self.command(
            name, build_df_command(self.target.policy.docker_root), probe_limit_s(self.target)
        )
        disk = parse_df(df.stdout_tail) if df.rc == 0 else None
        if disk is None:
            why = problem(df) if df.rc != 0 else "df's output not understood"
            self.notes.append(f"{name}: {why}")
        size, free = disk if disk else (None, None)
        return Measure(size, free, self.cache(f"cache {when}"))

    def cache(self, name: str) -> int | None:
        """The build cache's size: from `docker buildx du` where buildx is known to be
        installed (it walks no image, container or volume), else, or when it fails, from
        `docker system df` (docs/BENCHMARKS.md, "Probe cost")."""
        if self.known and self.known.buildx and not self.buildx_du_failed:
            listed = self.docker_probe(name, BUILDX_DU)
            if listed is None:
                return None
            found = parse_buildx_du(listed.stdout_tail) if listed.rc == 0 else None
            if found is not None:
                self.cache_probe = BUILDX_DU
                return found[1]
            self.buildx_du_failed = True
            why = problem(listed) if listed.rc != 0 else "no summary in its output"
            self.notes.append(f"{name}: {BUILDX_DU}: {why}; measured with {SYSTEM_DF}")
        listed = self.docker_probe(name, SYSTEM_DF)
        if listed is None:
            return None
        found = parse_build_cache(listed.stdout_tail) if listed.rc == 0 else None
        if found is None:
            why = problem(listed) if listed.rc != 0 else "no Build Cache row in its table"
            self.notes.append(f"{name}: {why}")
            return None
        self.cache_probe = SYSTEM_DF
        return found[1]

    def versions(self) -> Versions:
        server = self.docker_probe("docker version", DOCKER_VERSION)
        docker = parse_server_version(server.stdout_tail) if server else None
        if server is not None and docker is None:
            self.notes.append(f"docker version: {problem(server)}")
        buildx = None
        if server is not None:
            found = self.docker_probe("buildx version", BUILDX_VERSION)
            # no buildx is a fact to record, not a failure: the classic builder prunes
            buildx = parse_buildx_version(found.stdout_tail) if found else None
        return Versions(docker, buildx)

    def stage(self, name: str, command: str) -> StageResult:
        return summarize(self.command(name, command, self.target.policy.timeout_s))


def run_stages(
    steps: RunSteps, confirm: bool = False, aim: Goals | None = None
) -> tuple[RunOutcome, Versions | None]:
    """Measure, prune in stages while a goal is missed, measure again; the run's report
    (its duration is the caller's) and the versions it knows (`steps.known`, unless it
    learned them). With `confirm` (a critical start inside the interval), a host the first
    measure finds not critical is not pruned.
    `aim` (the watch's start) are the goals stage 2 prunes towards instead of the target's;
    either is raised to prune under `critical_percent` when the first measure finds the
    disk at or over it (`critical_aim`). The run is reported against the target's own."""
    policy = steps.target.policy
    known = versions = steps.known
    stages: list[StageResult] = []
    before = after = Measure()
    keep = None
    needed = True
    try:
        before = steps.measure("before")
        if confirm and (why := unconfirmed(policy.goals, policy.critical_percent, before)):
            steps.notes.append(why)
            needed, after = False, before
            raise Stopped
        over = over_critical(before, policy.critical_percent)
        aim = critical_aim(policy.goals if aim is None else aim, over, before)
        if versions is None:
            versions = steps.versions()
        stages.append(steps.stage("stage 1", build_prune_command(policy.until, policy.prune_all)))
        # measured after a failed stage 1 too: the run still says where the disk stands
        after = steps.measure("after stage 1")
        next_step = plan(aim, after)
        if stages[0].ok and next_step.note:
            steps.notes.append(next_step.note)
        if stages[0].ok and next_step.next == Next.STAGE_2:
            keep = next_step.keep_storage_bytes
            assert keep is not None
            command = build_keep_storage_command(keep, policy.prune_all)
            stages.append(steps.stage("stage 2", command))
            after = steps.measure("after stage 2")
    except Stopped:
        pass
    failure = steps.failure
    if not stages and failure is None and needed:
        why = steps.notes[-1] if steps.notes else "the run ended before its first stage"
        failure = internal_failure(why)
    outcome = report(
        stages,
        failure=failure,
        goals=policy.goals,
        before=before,
        after=after,
        steps=steps.steps,
        notes=steps.notes,
        keep_storage=keep,
        versions=versions,
        needed=needed,
    )
    return outcome, versions if versions and versions.docker else known


class Leases:
    """The leases of the runs this process holds. A running run renews its own before each
    of its commands, so one that hangs loses its target once its lease ends; whenever one
    does, the runs still queued here are renewed too (at most every RENEW_EVERY_S), with
    the longest lease held: every command ends within its target's timeout, so no queued
    run's lease runs out while this process lives. While the store is unavailable, renewals
    are tried at most every RENEW_EVERY_S: each try waits for the database's timeout, which
    before every command would hold the prune back. A process that dies renews nothing, and
    its runs are given up as lost once their leases expire."""

    def __init__(self, store: Store, clock: Callable[[], float]):
        self.store = store
        self.clock = clock
        self._held: dict[int, Target] = {}
        self._queued: set[int] = set()
        self._renewed = self._unavailable = float("-inf")
        self._lock = threading.Lock()

    def hold(self, target: Target, run_id: int) -> None:
        with self._lock:
            self._held[run_id] = target
            self._queued.add(run_id)

    def release(self, run_id: int) -> None:
        with self._lock:
            self._held.pop(run_id, None)
            self._queued.discard(run_id)

    def holds(self, run_id: int) -> bool:
        """Renew this run's lease, then the queued runs' when due; False when a newer run
        owns its target."""
        now = self.clock()
        with self._lock:
            target = self._held.get(run_id)
            self._queued.discard(run_id)
            if target is not None and abs(now - self._unavailable) < RENEW_EVERY_S:
                return True
            due = abs(now - self._renewed) >= RENEW_EVERY_S
            if due:
                self._renewed = now
            queued = {held: self._held[held] for held in self._queued} if due else {}
        failed = self._unavailable
        if target is None or not self._renew(run_id, target, now + target.policy.lease_s):
            return False
        longest = max(t.policy.lease_s for t in (target, *queued.values()))
        for held, queued_target in queued.items():
            if self._unavailable != failed:  # one wait for the database, not one per run
                break
            self._renew(held, queued_target, now + longest)
        return True

    def _renew(self, run_id: int, target: Target, expires: float) -> bool:
        try:
            if self.store.renew_lease(target.name, run_id, expires):
                return True
        except StoreUnavailable as error:
            self._unavailable = self.clock()
            log.error("run %s: cannot renew its lease: %s", run_id, error)
            return True
        self.release(run_id)
        return False


@dataclass(frozen=True)
class Orders:
    """How a claimed run is to be run, beyond its target: the request that started it (its
    log line names it); with `confirm`, prune only if the first measure finds the disk
    critical (it started inside the interval on the trigger's word); with `aim`, the goals
    stage 2 prunes towards (`run_stages`)."""

    request_id: str | None = None
    confirm: bool = False
    aim: Goals | None = None


class Runs:
    """Claimed runs, run by a pool of `max_parallel` threads; recorded, then told to the
    listeners. Its threads finish their runs before the process exits (a graceful stop)."""

    def __init__(
        self, access: HostAccess, max_parallel: int, finished: Sequence[FinishedListener] = ()
    ):
        self.access = access
        self.finished = finished
        self.leases = Leases(access.store, access.clock)
        self._pool = Pool(max_parallel, "prune")

    def submit(self, target: Target, run_id: int, orders: Orders) -> None:
        """Queue a claimed run, to be run as `orders` say."""
        self.leases.hold(target, run_id)
        self._pool.submit(run_id, self.execute, target, run_id, orders)

    def wait(self, run_id: int, timeout: float) -> None:
        self._pool.wait(run_id, timeout)

    def join_all(self, timeout: float | None = None) -> None:
        """Wait for the runs this process started (tests, the CLI, notifications at exit)."""
        self._pool.join_all(timeout)

    def execute(self, target: Target, run_id: int, orders: Orders) -> None:
        """Run a claimed prune, record it, tell the listeners, unless it was given up before
        it started. Never raises."""
        try:
            if not self.leases.holds(run_id):
                log.warning("run %s: given up while it waited for a slot", run_id)
                return
            outcome = self._run(target, run_id, orders)
            self._record(target, run_id, outcome)
        finally:
            self.leases.release(run_id)
        log.info(
            "run %s on %s %s",
            run_id,
            target.name,
            "ok" if outcome.ok else f"failed: {outcome.error_kind}",
            extra={"fields": _run_fields(outcome, run_id, orders.request_id, target)},
        )
        tell(self.finished, target, outcome, log=log, about=f"run {run_id}: ")

    def _run(self, target: Target, run_id: int, orders: Orders) -> RunOutcome:
        started = time.monotonic()
        known = self.access.versions.get(target.name)
        try:
            with closing(self.access.open_session(target)) as session:
                steps = RunSteps(session, target, lambda: self.leases.holds(run_id), known=known)
                outcome, versions = run_stages(steps, orders.confirm, orders.aim)
        except Exception as error:
            log.exception("run %s: the command runner raised", run_id)
            outcome = internal_outcome(type(error).__name__)
            versions = known
        if versions is not None:
            self.access.versions[target.name] = versions
        return replace(outcome, duration_s=round(time.monotonic() - started, 3))

    def _record(self, target: Target, run_id: int, outcome: RunOutcome) -> None:
        """Finish the run in the store, retrying while it is unavailable. Never raises: an
        outcome the store cannot take (a value no column holds, a bug) is recorded as a
        failure in prunehook itself instead, so the run is not left to be given up as lost."""
        for attempt in range(1, FINISH_ATTEMPTS + 1):
            try:
                if not self.access.store.finish(target.name, run_id, outcome, self.access.clock()):
                    log.warning(
                        "run %s finished after its lease expired; a newer run owns %s",
                        run_id,
                        target.name,
                    )
                return
            except StoreUnavailable as error:
                log.error(
                    "run %s: cannot record the outcome (attempt %s): %s", run_id, attempt, error
                )
                time.sleep(FINISH_BACKOFF_S * attempt)
            except Exception as error:
                log.exception("run %s: the store refused the outcome", run_id)
                why = f"prunehook could not record this run's outcome ({type(error).__name__})"
                if outcome.error == why:  # the fallback was refused too
                    break
                outcome = replace(internal_outcome(why), duration_s=outcome.duration_s)
        log.error("run %s: outcome not recorded; its lease will expire and mark it lost", run_id)


# what the run's log line carries beside the run's own fields
_LOGGED = (
    "rc",
    "reclaimed",
    "reclaimed_bytes",
    "error_kind",
    "error",
    "duration_s",
    "freed_bytes",
    "disk_free_after",
    "cache_after",
    "keep_storage_bytes",
    "goal_met",
    "free_short_bytes",
)


def _run_fields(
    outcome: RunOutcome, run_id: int, request_id: str | None, target: Target
) -> dict[str, object]:
    return {
        "event": "run_finished",
        "run_id": run_id,
        "request_id": request_id,
        "target": target.name,
        "result": "ok" if outcome.ok else "failed",
        **{name: getattr(outcome, name) for name in _LOGGED},
        "notes": list(outcome.notes),
    }
