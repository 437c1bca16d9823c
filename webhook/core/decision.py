"""Whether a trigger starts a prune: a pure function of state, time and policy."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Protocol


class Answer(StrEnum):
    """What a trigger answers for a target: `decide` gives the first three; the service
    the rest, where nothing is decided."""

    STARTED = "started"
    SKIPPED = "skipped"
    BUSY = "busy"
    DISABLED = "disabled"
    NO_TARGET = "no_target"
    IGNORED = "ignored"
    DUPLICATE = "duplicate"
    UNKNOWN_TARGET = "unknown_target"
    # the state database failed while this target was decided: nothing started for it
    UNAVAILABLE = "unavailable"


class Result(StrEnum):
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    LOST = "lost"


@dataclass(frozen=True, kw_only=True)
class TargetState:
    """What the store remembers of one target, as far as deciding needs it (the start of
    its stored row, `webhook.store.TargetRecord`)."""

    last_run_id: int | None = None
    last_started_ts: float | None = None
    last_finished_ts: float | None = None
    last_result: Result | None = None
    inflight_run_id: int | None = None
    lease_expires_ts: float | None = None
    # not needed to decide, but capped with the others after a clock step
    inflight_started_ts: float | None = None
    last_success_ts: float | None = None
    # the host refused the last run for now (its own interval): not before this
    retry_at_ts: float | None = None
    # the start the interval counts from: the last start but a critical one that its own
    # measure did not bear out (it pruned nothing); `interval_start` reads it
    interval_started_ts: float | None = None
    # the last critical start, which left `interval_started_ts` as it was
    uncounted_run_id: int | None = None


class Policy(Protocol):
    """What deciding needs of a target's policy (`webhook.core.targets.PrunePolicy`)."""

    @property
    def interval_s(self) -> float: ...

    @property
    def retry_after_s(self) -> float: ...

    @property
    def critical_interval_s(self) -> float: ...


@dataclass(frozen=True)
class Decision:
    answer: Answer
    reason: str
    next_eligible_ts: float | None = None
    # the in-flight run whose lease ran out: it is given up as lost when this claim starts
    lost_run_id: int | None = None
    # started inside the interval only on the trigger's word that the disk is nearly full:
    # the run confirms it with its own first measure before pruning
    critical: bool = False


# stored times further ahead of now than this mean the clock was stepped back (NTP, a
# restored VM): within it, the ordinary skew between processes reading the same clock
CLOCK_STEP_TOLERANCE_S = 60.0
# the stored times that are in the past when written: one ahead of now tells a clock step
PAST_TIMES = (
    "last_started_ts",
    "last_finished_ts",
    "inflight_started_ts",
    "last_success_ts",
    "interval_started_ts",
)


@dataclass(frozen=True)
class ClockStep:
    """Stored times were ahead of now: how far, and the state with them capped."""

    ahead_s: float
    state: TargetState


def clock_step(state: TargetState, now: float, lease_s: float) -> ClockStep | None:
    """None when the stored times are plausible at `now`; else they are capped so that the
    next prune is due at most an interval (or retry delay) from now and a lease ends at most
    `lease_s` from now, instead of waiting out the step as well."""
    past = [getattr(state, name) for name in PAST_TIMES if getattr(state, name) is not None]
    # a lease ends in the future by design (and further after PRUNEHOOK_TIMEOUT_S was
    # lowered): only its start tells a step
    ahead = max(past, default=now) - now
    if ahead <= CLOCK_STEP_TOLERANCE_S:
        return None

    def cap(ts: float | None, limit: float = now) -> float | None:
        return None if ts is None else min(ts, limit)

    past_capped: dict[str, Any] = {name: cap(getattr(state, name)) for name in PAST_TIMES}
    capped = replace(
        state,
        **past_capped,
        lease_expires_ts=cap(state.lease_expires_ts, now + lease_s),
        # the host's refusal stands anyway: it refuses again, saying when, if it is too soon
        retry_at_ts=cap(state.retry_at_ts, now + lease_s),
    )
    return ClockStep(ahead, capped)


def lease_is_live(state: TargetState, now: float) -> bool:
    return state.inflight_run_id is not None and (state.lease_expires_ts or 0) > now


def interval_start(state: TargetState) -> float | None:
    """The start the interval counts from: `interval_started_ts` while it is the last start
    or the last start is a critical one that left it; else the last start (a row written
    before the column existed, or a start by such a release, which writes neither)."""
    anchor = state.interval_started_ts
    if anchor == state.last_started_ts or state.uncounted_run_id == state.last_run_id:
        return anchor if anchor is not None else state.last_started_ts
    return state.last_started_ts


def next_eligible_ts(state: TargetState, policy: Policy) -> float | None:
    """When the next prune may start; None means it may start now (nothing ran yet)."""
    if state.inflight_run_id is not None:
        return state.lease_expires_ts
    counted = interval_start(state)
    if state.last_started_ts is None or counted is None:
        return None
    after_interval = counted + policy.interval_s
    if state.retry_at_ts is not None:
        return state.retry_at_ts  # the host said when, whatever our own delays say
    if state.last_result in (Result.FAILED, Result.LOST):
        finished = state.last_finished_ts or state.last_started_ts
        return min(after_interval, finished + policy.retry_after_s)
    return after_interval


def decide(
    state: TargetState, now: float, policy: Policy, force: bool = False, critical: bool = False
) -> Decision:
    """Start, or say why not. `force` overrides the interval only, never a live run.
    `critical` (the disk is nearly full) may start inside the interval, but never within
    `critical_interval_s` of the last start of any kind, however many critical alerts
    arrive, nor before the time the host's own interval gave (it would refuse again)."""
    run = state.inflight_run_id
    if lease_is_live(state, now):
        return Decision(Answer.BUSY, f"run {run} is in flight", state.lease_expires_ts)
    if run is not None:
        lost = f"lease of run {run} expired; it is given up as lost"
        return Decision(Answer.STARTED, lost, lost_run_id=run)
    eligible = next_eligible_ts(state, policy)
    if force:
        return Decision(Answer.STARTED, "forced")
    if eligible is None:
        return Decision(Answer.STARTED, "no prune has run yet")
    if now < eligible:
        if critical and state.last_started_ts is not None and state.retry_at_ts is None:
            critical_from = state.last_started_ts + policy.critical_interval_s
            if now >= critical_from:
                reason = "critical: inside the interval, past critical_interval_s since the last"
                return Decision(Answer.STARTED, f"{reason} start", critical=True)
            reason = "critical, but the last prune started within critical_interval_s"
            return Decision(Answer.SKIPPED, reason, next_eligible_ts=min(eligible, critical_from))
        why = "interval"
        if state.retry_at_ts is not None:
            why = "the host's own interval"
        elif state.last_result != Result.OK:
            why = "last run failed; retry"
        return Decision(Answer.SKIPPED, f"{why} not due yet", next_eligible_ts=eligible)
    return Decision(Answer.STARTED, "due")
