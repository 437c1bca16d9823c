"""What a run did: a command's raw execution, a stage's result read from it, and the run's
report made from its stages and measurements."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from webhook.core.disk import Assessment, Goals, Measure, assess
from webhook.core.sizes import clamp_size, find_reclaimed, human_size

DOCKER_DOWN = "Cannot connect to the Docker daemon"
DOCKER_REFUSED = "Error response from daemon"
# `timeout` (the host-side guard runs the prune under it) exits 124 when the limit ends it
HOST_TIME_LIMIT_RC = 124
# the guard's --min-interval refusal (sysexits' EX_TEMPFAIL) and what it says on stderr
HOST_INTERVAL_RC = 75
_HOST_WAIT = re.compile(r"prunehook-guard: (last prune \d+ s ago; next allowed in (\d{1,9}) s)")
# the longest wait a host's refusal is taken at its word for: past it, the service asks again
# (the host refuses again if it must), rather than a target held for up to 31 years
HOST_WAIT_MAX_S = 7 * 86400.0


class ErrorKind(StrEnum):
    """Why a run failed: `last_error_kind` in /status, the `outcome` label in /metrics."""

    KEY_MISSING = "key_missing"
    KEY_INVALID = "key_invalid"
    HOST_KEY_UNKNOWN = "host_key_unknown"
    HOST_KEY_CHANGED = "host_key_changed"
    AUTH_FAILED = "auth_failed"
    CONNECT_REFUSED = "connect_refused"
    CONNECT_TIMEOUT = "connect_timeout"
    CONNECT_ERROR = "connect_error"
    BANNER_TIMEOUT = "banner_timeout"
    SSH_ERROR = "ssh_error"
    EXEC_TIMEOUT = "exec_timeout"
    TIMEOUT = "timeout"
    HOST_TIMEOUT = "host_timeout"
    EXIT_STATUS = "exit_status"
    DOCKER_UNAVAILABLE = "docker_unavailable"
    DOCKER_ERROR = "docker_error"
    HOST_INTERVAL = "host_interval"
    INTERNAL = "internal"
    LOST = "lost"


@dataclass(frozen=True)
class Execution:
    """The raw result of running a command over SSH. `error_kind` is set when the command
    could not run to completion (connection, host key, auth, timeout, ...)."""

    rc: int | None
    stdout_tail: str
    stderr_tail: str
    duration_s: float
    error_kind: ErrorKind | None = None
    error: str | None = None
    # False when the host was never reached or never accepted the key
    logged_in: bool = True


# what a run's history keeps of each step's output: enough for the lines that matter (an
# error, a total), while ten runs of eight steps stay small enough to show
STEP_TAIL_CHARS = 2048


@dataclass(frozen=True)
class Step:
    """One command of a run (a probe or a stage) as the run's history keeps it."""

    name: str
    command: str
    rc: int | None
    duration_s: float
    stdout_tail: str = ""
    stderr_tail: str = ""
    error_kind: ErrorKind | None = None
    error: str | None = None

    @classmethod
    def of(cls, name: str, command: str, execution: Execution) -> Step:
        """The step, with why it failed when the command exited non-zero (as its stage
        would be read), not only when it could not run."""
        failed = summarize(execution) if execution.rc not in (0, None) else None
        return cls(
            name=name,
            command=command,
            rc=execution.rc,
            duration_s=round(execution.duration_s, 3),
            stdout_tail=execution.stdout_tail[-STEP_TAIL_CHARS:],
            stderr_tail=execution.stderr_tail[-STEP_TAIL_CHARS:],
            error_kind=failed.error_kind if failed else execution.error_kind,
            error=failed.error if failed else execution.error,
        )


@dataclass(frozen=True)
class StageResult:
    """What one stage's command did: ok, or which failure with a readable error."""

    ok: bool
    rc: int | None
    reclaimed: str | None
    reclaimed_bytes: int | None
    error_kind: ErrorKind | None
    error: str | None
    duration_s: float
    stdout_tail: str
    stderr_tail: str
    # the host refused for now (its own interval): try again no sooner than this
    retry_after_s: float | None = None


@dataclass(frozen=True, kw_only=True)
class Measured:
    """What a run measured and decided (DESIGN.md, "Disk-aware pruning"), None where not
    known: declared once for the run's report (RunOutcome) and its stored row (RunRecord)."""

    # each command and probe, in order, and what the run decided or could not do
    steps: tuple[Step, ...] = ()
    notes: tuple[str, ...] = ()
    # free bytes after less free bytes before, both from df: exact, unlike `reclaimed`
    freed_bytes: int | None = None
    disk_size: int | None = None
    disk_free_before: int | None = None
    disk_free_after: int | None = None
    # Docker's figures (`docker system df`), parsed
    cache_before: int | None = None
    cache_after: int | None = None
    # the goals after the last stage: met, or missed by how much (webhook.core.disk.assess)
    goal_met: bool | None = None
    free_short_bytes: int | None = None
    cache_over_bytes: int | None = None
    # stage 2's --keep-storage, when it ran
    keep_storage_bytes: int | None = None
    docker_version: str | None = None
    buildx_version: str | None = None


@dataclass(frozen=True)
class RunOutcome(Measured, StageResult):
    """What a whole run did, made by `report` from its stages and measurements: a stage's
    fields for the run (every stage ok, Docker's reclaimed space summed, the last stage's rc
    and output), then what it measured and decided."""

    # False: its first measure found no prune needed, so it stopped before any stage (a
    # critical start the host's own measure did not bear out): its start does not count
    # for the interval
    needed: bool = field(default=True, kw_only=True)


@dataclass(frozen=True)
class Versions:
    docker: str | None = None
    buildx: str | None = None


def _reclaimed_total(stages: Sequence[StageResult]) -> tuple[str | None, int | None]:
    """Docker's reclaimed space over the stages: as printed for one, summed for more."""
    sizes = [stage.reclaimed_bytes for stage in stages if stage.reclaimed_bytes is not None]
    if not sizes:
        return None, None
    if len(stages) == 1:
        return stages[0].reclaimed, stages[0].reclaimed_bytes
    total = clamp_size(sum(sizes))
    return human_size(total), total


def report(
    stages: Sequence[StageResult],
    *,
    failure: StageResult | None,
    goals: Goals,
    before: Measure,
    after: Measure,
    steps: Sequence[Step] = (),
    notes: Sequence[str] = (),
    keep_storage: int | None = None,
    versions: Versions | None = None,
    needed: bool = True,
) -> RunOutcome:
    """The run's report: its totals computed from the stages that ran and what was measured
    (its duration is the caller's). `failure` is what ended the run early (a lost
    connection), if a stage did not say it; `needed` False: the run measured and found no
    prune needed (ok without a stage)."""
    failed = next((stage for stage in stages if not stage.ok), failure)
    last = failure or (stages[-1] if stages else None)
    reclaimed, reclaimed_bytes = _reclaimed_total(stages)
    freed = None
    if before.disk_free is not None and after.disk_free is not None:
        freed = after.disk_free - before.disk_free
    standing = assess(goals, after) if stages or not needed else Assessment(None)
    versions = versions or Versions()
    return RunOutcome(
        ok=(bool(stages) or not needed) and failed is None,
        rc=last.rc if last else None,
        reclaimed=reclaimed,
        reclaimed_bytes=reclaimed_bytes,
        error_kind=failed.error_kind if failed else None,
        error=failed.error if failed else None,
        duration_s=0.0,
        stdout_tail=last.stdout_tail if last else "",
        stderr_tail=last.stderr_tail if last else "",
        steps=tuple(steps),
        notes=tuple(notes),
        freed_bytes=freed,
        disk_size=after.disk_size if after.disk_size is not None else before.disk_size,
        disk_free_before=before.disk_free,
        disk_free_after=after.disk_free,
        cache_before=before.cache,
        cache_after=after.cache,
        goal_met=standing.met,
        free_short_bytes=standing.free_short,
        cache_over_bytes=standing.cache_over,
        keep_storage_bytes=keep_storage,
        docker_version=versions.docker,
        buildx_version=versions.buildx,
        retry_after_s=failed.retry_after_s if failed else None,
        needed=needed,
    )


def internal_failure(why: str) -> StageResult:
    """A run that failed in prunehook itself, not on the host."""
    return StageResult(False, None, None, None, ErrorKind.INTERNAL, why, 0.0, "", "")


def internal_outcome(why: str) -> RunOutcome:
    """A run that failed in prunehook itself before it could measure anything."""
    failure = internal_failure(why)
    return report([], failure=failure, goals=Goals(), before=Measure(), after=Measure())


def last_line(text: str, limit: int = 500) -> str:
    """The last line that says something, as errors quote it."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:limit] if lines else ""


def summarize(execution: Execution) -> StageResult:
    """Classify an execution: success, or which kind of failure with a readable error."""
    kind = ErrorKind(execution.error_kind) if execution.error_kind else None
    error = execution.error
    if kind is None and execution.rc != 0:
        detail = last_line(execution.stderr_tail) or last_line(execution.stdout_tail)
        kind = ErrorKind.EXIT_STATUS
        if DOCKER_DOWN in execution.stderr_tail:
            kind = ErrorKind.DOCKER_UNAVAILABLE
        elif DOCKER_REFUSED in execution.stderr_tail:
            kind = ErrorKind.DOCKER_ERROR
        error = f"rc={execution.rc}: {detail}" if detail else f"rc={execution.rc}"
        if execution.rc == HOST_TIME_LIMIT_RC:
            kind = ErrorKind.HOST_TIMEOUT
            error = "rc=124: the host's time limit (prunehook-guard --timeout) ended the prune"
    wait = _HOST_WAIT.search(execution.stderr_tail)
    if execution.rc == HOST_INTERVAL_RC and wait:
        kind = ErrorKind.HOST_INTERVAL
        error = f"the host's own interval (prunehook-guard --min-interval): {wait.group(1)}"
    found = find_reclaimed(execution.stdout_tail) if kind is None else None
    return StageResult(
        ok=kind is None,
        rc=execution.rc,
        reclaimed=found[0] if found else None,
        reclaimed_bytes=found[1] if found else None,
        error_kind=kind,
        error=error,
        duration_s=round(execution.duration_s, 3),
        stdout_tail=execution.stdout_tail,
        stderr_tail=execution.stderr_tail,
        retry_after_s=(
            min(float(wait.group(2)), HOST_WAIT_MAX_S)
            if kind == ErrorKind.HOST_INTERVAL and wait
            else None
        ),
    )
