"""What GET /status shows: pure functions of the fleet, the stored records and now."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from webhook.core.command import build_prune_command
from webhook.core.decision import Result, interval_start, lease_is_live, next_eligible_ts
from webhook.core.disk import Goals
from webhook.core.duration import span
from webhook.core.forecast import Forecast, Sample, headline, in_words
from webhook.core.sizes import human_size
from webhook.core.targets import PrunePolicy, Target
from webhook.store import RunRecord, TargetRecord
from webhook.web.schemas import FORECAST, RUN


def _in_flight(
    record: TargetRecord, runs: list[RunRecord] | None, now: float
) -> dict[str, Any] | None:
    if record.inflight_run_id is None:
        return None
    worker = next((run.worker_pid for run in runs or () if run.id == record.inflight_run_id), None)
    return {
        "run_id": record.inflight_run_id,
        "started_ts": record.inflight_started_ts,
        "lease_expires_ts": record.lease_expires_ts,
        "lease_expired": not lease_is_live(record, now),
        "worker_pid": worker,
    }


def target_status(
    target: Target | None,
    policy: PrunePolicy,
    record: TargetRecord | None,
    now: float,
    *,
    enabled: bool,
    runs: list[RunRecord] | None = None,
) -> dict[str, Any]:
    """One target's keys (the seed's among them); `runs` adds `recent_runs`. With no
    target (nothing configured) the policy's values and an empty state are shown."""
    name = target.name if target else None
    record = record or TargetRecord(name or "")
    eligible = next_eligible_ts(record, policy)
    shown: dict[str, Any] = {
        "name": name,
        "host": str(target.ssh) if target else None,
        "enabled": enabled,
        "command": build_prune_command(policy.until, policy.prune_all),
        "interval_s": policy.interval_s,
        "retry_after_s": policy.retry_after_s,
        "timeout_s": policy.timeout_s,
        "until": policy.until,
        "all": policy.prune_all,
        "last_run_ts": record.last_started_ts,
        # the interval counts from here, not from a critical start its measure did not bear out
        "interval_from_ts": interval_start(record),
        "last_finished_ts": record.last_finished_ts,
        "last_result": record.last_result,
        "last_reclaimed": record.last_reclaimed,
        "last_reclaimed_bytes": record.last_reclaimed_bytes,
        "last_error": record.last_error,
        "last_error_kind": record.last_error_kind,
        "last_success_ts": record.last_success_ts,
        "in_flight": _in_flight(record, runs, now),
        "next_eligible_ts": eligible,
        "eligible_now": enabled and target is not None and (eligible is None or eligible <= now),
        # disk-aware pruning: the goals, the critical path, and the last measurement
        "max_cache": policy.max_cache,
        "min_free": str(policy.min_free) if policy.min_free else None,
        "critical_percent": policy.critical_percent,
        "critical_interval_s": policy.critical_interval_s,
        "docker_root": policy.docker_root,
        "disk_size_bytes": record.last_disk_size,
        "disk_free_bytes": record.last_disk_free,
        "build_cache_bytes": record.last_cache,
        "measured_ts": record.last_measured_ts,
        "last_freed_bytes": record.last_freed_bytes,
        "last_goal_met": record.last_goal_met,
        "last_free_short_bytes": record.last_free_short_bytes,
        "forecast": FORECAST.dump(record.forecast) if record.forecast else None,
    }
    if runs is not None:
        shown["recent_runs"] = [RUN.dump(run) for run in runs]
    return shown


class HostState(StrEnum):
    """How a target is doing, as the fleet page shows it."""

    STALLED = "lease expired"  # a run in flight past its lease: its worker died
    FAILED = "failed"
    LOST = "lost"  # the last run's worker died; it was given up
    MISSED = "goal missed"  # the last run left the disk short of a goal (after stage 2)
    NEVER = "never pruned"
    PRUNING = "pruning"  # its first run, or one after a good run, is in flight
    OK = "ok"


# worst first; a run in flight after a failure stays with the failures
_RANK = {
    HostState.STALLED: 0,
    HostState.FAILED: 1,
    HostState.LOST: 1,
    HostState.MISSED: 2,
    HostState.NEVER: 3,
    HostState.PRUNING: 4,
    HostState.OK: 4,
}


def host_state(shown: dict[str, Any]) -> HostState:
    """The state of one of `target_status`'s answers: a run in flight past its lease, else
    the last finished run's result (a live run in flight beside it is `pruning()`)."""
    flight = shown["in_flight"]
    if flight and flight["lease_expired"]:
        return HostState.STALLED
    if shown["last_result"] == Result.FAILED:
        return HostState.FAILED
    if shown["last_result"] == Result.LOST:
        return HostState.LOST
    if shown["last_goal_met"] is False:
        return HostState.MISSED
    if flight:
        return HostState.PRUNING
    if shown["last_result"] is None:
        return HostState.NEVER
    return HostState.OK


def pruning(shown: dict[str, Any]) -> bool:
    """A run is in flight within its lease."""
    flight = shown["in_flight"]
    return bool(flight) and not flight["lease_expired"]


def worst_first(targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A run in flight past its lease first, then failed or lost, a goal missed, never
    pruned, the rest; by name within each."""
    return sorted(targets, key=lambda shown: (_RANK[host_state(shown)], shown["name"]))


def human_time(ts: float | None) -> str:
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


MARK_PX = 6


def reclaimed_bars(runs: list[dict[str, Any]], width: int = 600, height: int = 140) -> list[dict]:
    """Bars for a chart of reclaimed space, oldest run first, scaled to the largest.
    A run that failed or is still running has nothing to show: a small mark says which."""
    ordered = list(reversed(runs))
    largest = max((run.get("reclaimed_bytes") or 0 for run in ordered), default=0) or 1
    slot = width / max(len(ordered), 1)
    bars = []
    for index, run in enumerate(ordered):
        size = run.get("reclaimed_bytes") or 0
        # failed, or lost with its worker: a bar of the failed
        state = run["result"] if run["result"] in (Result.OK, Result.RUNNING) else Result.FAILED
        bar_height = round(size / largest * (height - 20), 1) if size else 0
        if state != Result.OK:
            bar_height = MARK_PX
        bars.append(
            {
                "x": round(index * slot + slot * 0.15, 1),
                "y": round(height - bar_height, 1),
                "width": round(slot * 0.7, 1),
                "height": bar_height,
                "label": run.get("reclaimed") or ("0B" if state == Result.OK else str(state)),
                "state": state,
                "id": run.get("id"),
            }
        )
    return bars


def size_text(value: int | None) -> str:
    """A size as Docker prints it; a dash for none."""
    return "—" if value is None else human_size(value)


def freed_text(freed: int | None) -> str:
    """What a run freed (df). Less free space after it than before is the disk growing
    during the run (other writes outpaced the prune): said so, never a negative size."""
    if freed is None or freed >= 0:
        return size_text(freed)
    return f"none: the disk grew {human_size(-freed)} during the run"


def _freed_label(freed: int) -> str:
    return f"freed {human_size(freed)}" if freed >= 0 else f"grew {human_size(-freed)}"


def _first(*values: int | None) -> int | None:
    return next((value for value in values if value is not None), None)


def disk_chart(
    runs: list[dict[str, Any]], goals: Goals, width: int = 600, height: int = 140
) -> dict[str, Any]:
    """A column per run that measured the disk, oldest first: the disk's size (the whole
    height), its free space after the run and the build cache beside it, both as shares
    of the disk; the goals as lines at the last run's size. Runs that measured nothing
    (the host was not reached) are left out."""
    measured = [run for run in reversed(runs) if run.get("disk_size")]
    slot = width / max(len(measured), 1)
    room = height - 20
    columns = []
    for index, run in enumerate(measured):
        size = run["disk_size"]
        free = _first(run.get("disk_free_after"), run.get("disk_free_before"))
        cache = _first(run.get("cache_after"), run.get("cache_before"))
        free_height = round(min(free or 0, size) / size * room, 1)
        cache_height = round(min(cache or 0, size) / size * room, 1)
        x = index * slot + slot * 0.15
        freed = run.get("freed_bytes")
        goal = run.get("goal_met")
        columns.append(
            {
                "id": run.get("id"),
                "x": round(x, 1),
                "width": round(slot * 0.45, 1),
                "cache_x": round(x + slot * 0.47, 1),
                "cache_width": round(slot * 0.23, 1),
                "top": height - room,
                "room": room,
                "free_y": round(height - free_height, 1),
                "free_height": free_height,
                "cache_y": round(height - cache_height, 1),
                "cache_height": cache_height,
                "label": "—" if freed is None else _freed_label(freed),
                "goal": {True: "met", False: "missed", None: ""}[goal],
                "title": (
                    f"run {run.get('id')}: {size_text(free)} free of {size_text(size)},"
                    f" cache {size_text(cache)}, freed {freed_text(freed)}"
                ),
            }
        )
    lines: dict[str, float | None] = {"min_free_y": None, "max_cache_y": None}
    if measured:
        size = measured[-1]["disk_size"]
        wanted = goals.min_free.bytes_of(size) if goals.min_free else None
        for key, value in (("min_free_y", wanted), ("max_cache_y", goals.max_cache)):
            if value is not None and value <= size:
                lines[key] = round(height - value / size * room, 1)
    return {"columns": columns, **lines}


def free_chart(
    samples: Sequence[Sample], goals: Goals, now: float, window_s: float,
    width: int = 600, height: int = 100,
) -> dict[str, Any]:  # fmt: skip
    """Free space over the forecast window as a line (a share of the disk's last size,
    oldest sample on the left, now at the right edge) and min_free as a level; `label`
    says it in words for those who cannot see it. Samples without a measure are left out."""
    measured = [s for s in samples if s.disk_free is not None and s.disk_size]
    if not measured:
        return {"points": "", "min_free_y": None, "label": "", "window_s": window_s}
    size = measured[-1].disk_size or 1
    start = now - window_s

    def y(free: float) -> float:
        return round(height - min(max(free, 0), size) / size * height, 1)

    points = " ".join(
        f"{round((s.ts - start) / window_s * width, 1)},{y(s.disk_free or 0)}" for s in measured
    )
    wanted = goals.min_free.bytes_of(size) if goals.min_free else None
    first, last = measured[0], measured[-1]
    label = (
        f"free space over the last {span(window_s)}: {len(measured)} samples, from"
        f" {human_size(first.disk_free or 0)} to {human_size(last.disk_free or 0)}"
        f" of {human_size(size)}"
    )
    return {
        "points": points,
        "min_free_y": None if wanted is None or wanted > size else y(wanted),
        "label": label,
        "window_s": window_s,
    }


def forecast_of(shown: dict[str, Any]) -> Forecast | None:
    """The forecast of one of `target_status`'s answers, as the record had it."""
    dumped = shown.get("forecast")
    return Forecast(**dumped) if dumped else None


def fill_headline(shown: dict[str, Any], now: float) -> str:
    return headline(forecast_of(shown), now)


def fill_words(shown: dict[str, Any], now: float) -> str:
    return in_words(forecast_of(shown), now)
