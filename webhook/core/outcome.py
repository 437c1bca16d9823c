"""What one remote prune did, and how a raw SSH execution is read into it."""

from __future__ import annotations

from dataclasses import dataclass

from webhook.core.sizes import find_reclaimed

DOCKER_DOWN = "Cannot connect to the Docker daemon"
DOCKER_REFUSED = "Error response from daemon"
# `timeout` (the host-side guard runs the prune under it) exits 124 when the limit ends it
HOST_TIME_LIMIT_RC = 124


@dataclass(frozen=True)
class Execution:
    """The raw result of running a command over SSH. `error_kind` is set when the command
    could not run to completion (connection, host key, auth, timeout, ...)."""

    rc: int | None
    stdout_tail: str
    stderr_tail: str
    duration_s: float
    error_kind: str | None = None
    error: str | None = None
    # False when the host was never reached or never accepted the key
    logged_in: bool = True


@dataclass(frozen=True)
class RunOutcome:
    ok: bool
    rc: int | None
    reclaimed: str | None
    reclaimed_bytes: int | None
    error_kind: str | None
    error: str | None
    duration_s: float
    stdout_tail: str
    stderr_tail: str


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""


def summarize(execution: Execution) -> RunOutcome:
    """Classify an execution: success, or which kind of failure with a readable error."""
    kind, error = execution.error_kind, execution.error
    if kind is None and execution.rc != 0:
        detail = _last_line(execution.stderr_tail) or _last_line(execution.stdout_tail)
        kind = "exit_status"
        if DOCKER_DOWN in execution.stderr_tail:
            kind = "docker_unavailable"
        elif DOCKER_REFUSED in execution.stderr_tail:
            kind = "docker_error"
        error = f"rc={execution.rc}: {detail}" if detail else f"rc={execution.rc}"
        if execution.rc == HOST_TIME_LIMIT_RC:
            kind = "host_timeout"
            error = "rc=124: the host's time limit (prunehook-guard --timeout) ended the prune"
    found = find_reclaimed(execution.stdout_tail) if kind is None else None
    return RunOutcome(
        ok=kind is None,
        rc=execution.rc,
        reclaimed=found[0] if found else None,
        reclaimed_bytes=found[1] if found else None,
        error_kind=kind,
        error=error,
        duration_s=round(execution.duration_s, 3),
        stdout_tail=execution.stdout_tail,
        stderr_tail=execution.stderr_tail,
    )
