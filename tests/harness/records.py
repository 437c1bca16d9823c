"""Records as a prune leaves them, for tests, benchmarks and demos that fill a store.

Build them here rather than calling RunOutcome(...) by position, so a field added to the
record changes one place.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from webhook.core.outcome import ErrorKind, RunOutcome
from webhook.core.sizes import human_size
from webhook.store import NewRun, Store


def succeeded_outcome(
    reclaimed_bytes: int | None = 10**9,
    *,
    reclaimed: str | None = None,
    duration_s: float = 1.0,
    stdout_tail: str = "",
    stderr_tail: str = "",
    **measured: Any,
) -> RunOutcome:
    """A prune that exited 0; `reclaimed` defaults to Docker's way of printing the bytes.
    `measured` sets RunOutcome's other fields (steps, freed_bytes, goal_met, ...)."""
    if reclaimed is None and reclaimed_bytes is not None:
        reclaimed = human_size(reclaimed_bytes)
    outcome = RunOutcome(
        ok=True,
        rc=0,
        reclaimed=reclaimed,
        reclaimed_bytes=reclaimed_bytes,
        error_kind=None,
        error=None,
        duration_s=duration_s,
        stdout_tail=stdout_tail,
        stderr_tail=stderr_tail,
    )
    return dataclasses.replace(outcome, **measured)


def failed_outcome(
    error_kind: ErrorKind = ErrorKind.EXIT_STATUS,
    error: str = "rc=1",
    *,
    rc: int | None = 1,
    duration_s: float = 1.0,
    stdout_tail: str = "",
    stderr_tail: str = "",
) -> RunOutcome:
    """A prune that failed: nothing reclaimed, the failure's kind and readable error."""
    return RunOutcome(
        ok=False,
        rc=rc,
        reclaimed=None,
        reclaimed_bytes=None,
        error_kind=error_kind,
        error=error,
        duration_s=duration_s,
        stdout_tail=stdout_tail,
        stderr_tail=stderr_tail,
    )


def record_run(
    store: Store,
    target: str,
    started: float,
    outcome: RunOutcome,
    *,
    trigger: str = "cron",
    command: str = "docker builder prune -f --filter until=24h",
    lease_s: float = 180.0,
) -> int:
    """Claim and finish a run as a prune at `started` would, whatever the interval says (a
    demo's or a benchmark's history). Any run in flight is given up as lost."""
    run_id = store.claim(
        target, store.read_state(target), NewRun(trigger, command), started, lease_s
    )
    if run_id is None:
        raise RuntimeError(f"the state of {target} changed while a run was being recorded")
    store.finish(target, run_id, outcome, started + outcome.duration_s)
    return run_id
