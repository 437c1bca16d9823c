"""What to tell operators about a finished run, and why: pure, no sending.

Three reasons, each decided from the run's outcome and what the caller read
for it: a reclaim of at least the threshold; the Nth failed run in a row of a
target (told once, when the streak reaches N, not on each failure after); free
space still short of `min_free` after the last stage. And two from the watch's
measures (DESIGN.md, "Watching and forecasting"): a run started ahead of the
forecast; a disk short of its goals with too little cache for a prune to help
(told once, not at every measure that finds it so).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from itertools import dropwhile, takewhile

from webhook.core.decision import Result
from webhook.core.forecast import Act, Forecast, Verdict, when
from webhook.core.outcome import RunOutcome
from webhook.core.sizes import human_size

# the longest piece of a run's error a message quotes
ERROR_CHARS = 300


class Reason(StrEnum):
    """Why a notice is sent: the `reason` label of prunehook_notifications_total."""

    RECLAIMED = "reclaimed"
    FAILURES = "failures"
    DISK_LOW = "disk_low"
    FORECAST = "forecast"
    TEST = "test"  # asked for by the operator: prunehook notify --test


class Severity(StrEnum):
    """How a destination shows it (apprise's notify types)."""

    INFO = "info"
    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"


@dataclass(frozen=True)
class NoticePolicy:
    """When to tell: at least `min_reclaim_bytes` reclaimed (0: never); `failures` failed
    runs in a row (0: never). Free space short of min_free is always told."""

    min_reclaim_bytes: int = 0
    failures: int = 3


@dataclass(frozen=True)
class Notice:
    target: str
    reason: Reason
    severity: Severity
    title: str
    body: str


def failure_streak(results: Sequence[Result]) -> int:
    """How many runs in a row failed, counted from the newest of `results` (newest first).

    A run still in flight at the top is passed over (it has not failed yet); a lost run (its
    worker died) counts as failed; the first success ends the streak."""
    finished = dropwhile(lambda result: result == Result.RUNNING, results)
    return len(list(takewhile(lambda result: result in (Result.FAILED, Result.LOST), finished)))


def reclaim_notice(target: str, outcome: RunOutcome, min_reclaim_bytes: int) -> Notice | None:
    """A good run that reclaimed at least the threshold (a threshold of 0 never tells)."""
    reclaimed = outcome.reclaimed_bytes
    if not (outcome.ok and reclaimed is not None and 0 < min_reclaim_bytes <= reclaimed):
        return None
    shown = outcome.reclaimed or human_size(reclaimed)
    return Notice(
        target,
        Reason.RECLAIMED,
        Severity.SUCCESS,
        f"prunehook: reclaimed {shown} on {target}",
        f"Pruned BuildKit build cache on {target}: reclaimed {shown} ({reclaimed} bytes) "
        f"in {outcome.duration_s:.1f} s.",
    )


def failures_notice(target: str, outcome: RunOutcome, streak: int, failures: int) -> Notice | None:
    """The failed run that makes `failures` in a row: once per streak, not after each failure
    past it (a success starts a new streak)."""
    if failures <= 0 or outcome.ok or streak != failures:
        return None
    error = (outcome.error or "").strip()
    if len(error) > ERROR_CHARS:
        error = error[: ERROR_CHARS - 3] + "..."
    kind = outcome.error_kind or "failed"
    last = f"{kind}: {error}" if error else str(kind)
    if failures == 1:
        title = f"prunehook: a prune failed on {target}"
        told = f"The last prune on {target} failed: {last}."
    else:
        title = f"prunehook: {failures} failed prunes in a row on {target}"
        told = f"The last {failures} prunes on {target} failed; the last: {last}."
    return Notice(
        target,
        Reason.FAILURES,
        Severity.FAILURE,
        title,
        f"{told} Its build cache is not being pruned; GET /status shows the runs.",
    )


def disk_low_notice(target: str, free_space_short_bytes: int | None) -> Notice | None:
    """Free space still under min_free after the last stage, short by this many bytes
    (None, or 0 or less: the goal was met or not set)."""
    if free_space_short_bytes is None or free_space_short_bytes <= 0:
        return None
    short = human_size(free_space_short_bytes)
    return Notice(
        target,
        Reason.DISK_LOW,
        Severity.WARNING,
        f"prunehook: {target} is still short of free space after pruning",
        f"After the last prune stage on {target}, free space is still {short} "
        f"({free_space_short_bytes} bytes) short of min_free. Only build cache is pruned: "
        "what fills the rest of the disk needs a person.",
    )


def free_space_short_bytes(outcome: RunOutcome) -> int | None:
    """By how much free space fell short of min_free after the run's last stage, as the
    disk-aware stages measured it (`RunOutcome.free_short_bytes`); None when no goal was
    set or it could not be measured."""
    value: object = outcome.free_short_bytes
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def notices_for(
    target: str, outcome: RunOutcome, streak: int, policy: NoticePolicy
) -> tuple[Notice, ...]:
    """Everything to tell about one finished run of `target`. `streak` is the number of failed
    runs in a row ending with this one (0 when it succeeded), as the store has them."""
    found = (
        reclaim_notice(target, outcome, policy.min_reclaim_bytes),
        failures_notice(target, outcome, streak, policy.failures),
        disk_low_notice(target, free_space_short_bytes(outcome)),
    )
    return tuple(notice for notice in found if notice is not None)


def _at(ts: float, now: float) -> str:
    return f"{datetime.fromtimestamp(ts, UTC):%Y-%m-%d %H:%M UTC} ({when(ts, now)})"


def forecast_notice(target: str, found: Forecast, run_id: int, now: float) -> Notice:
    """A run started ahead of the forecast: when the disk would have crossed its goals."""
    would = []
    if found.min_free_at is not None and found.min_free_at != found.full_at:
        would.append(f"fallen under min_free at {_at(found.min_free_at, now)}")
    if found.full_at is not None:
        would.append(f"filled at {_at(found.full_at, now)}")
    if found.max_cache_at is not None:
        would.append(f"held a cache over max_cache at {_at(found.max_cache_at, now)}")
    rate = found.fill_rate_bytes_per_s or 0.0
    return Notice(
        target,
        Reason.FORECAST,
        Severity.WARNING,
        f"prunehook: pruning {target} ahead of its forecast",
        f"{target}'s disk is filling at {human_size(round(rate * 3600))}/h (a line through "
        f"{found.samples} samples): it would have {' and '.join(would)}. Run {run_id} was "
        "started to make room before then.",
    )


def cache_too_small_notice(target: str, why: str) -> Notice:
    """A disk short of its goals where pruning the cache would not help (the verdict's
    `why` says by how much, and how small the cache is)."""
    return Notice(
        target,
        Reason.DISK_LOW,
        Severity.WARNING,
        f"prunehook: {target} is short of disk space and pruning cannot help",
        f"On {target}, {why}: no prune was started. Only build cache is pruned: what fills "
        "the rest of the disk needs a person.",
    )


def measured_notices(
    target: str,
    told: Verdict | None,
    found: Forecast | None,
    run_id: int | None,
    *,
    repeated: bool,
    now: float,
) -> tuple[Notice, ...]:
    """What to tell about one measure of the watch: `told` is its verdict, `run_id` the run
    it started (if any), `repeated` whether the measure before it asked the same."""
    if told is None:
        return ()
    if told.act == Act.FORECAST and found is not None and run_id is not None:
        return (forecast_notice(target, found, run_id, now),)
    if told.act == Act.CACHE_TOO_SMALL and not repeated:
        return (cache_too_small_notice(target, told.reason),)
    return ()
