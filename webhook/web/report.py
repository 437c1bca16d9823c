"""What GET /status shows: a pure function of settings, the stored row and recent runs."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from webhook.config import Settings
from webhook.core.decision import Result, TargetState, lease_is_live, next_eligible_ts
from webhook.web.schemas import run_view


def build_status(
    settings: Settings,
    row: dict[str, Any] | None,
    runs: list[dict[str, Any]],
    now: float,
    command: str,
) -> dict[str, Any]:
    row = row or {}
    state = TargetState.from_mapping(row)
    eligible = next_eligible_ts(state, settings.policy)
    in_flight = None
    if state.inflight_run_id is not None:
        in_flight = {
            "run_id": state.inflight_run_id,
            "started_ts": row.get("inflight_started_ts"),
            "lease_expires_ts": state.lease_expires_ts,
            "lease_expired": not lease_is_live(state, now),
            "worker_pid": next(
                (run.get("worker_pid") for run in runs if run.get("id") == state.inflight_run_id),
                None,
            ),
        }
    return {
        "enabled": settings.enabled,
        "target": settings.target,
        "host": str(settings.env_target.ssh) if settings.env_target else None,
        "command": command,
        "interval_s": settings.interval_s,
        "retry_after_s": settings.retry_after_s,
        "timeout_s": settings.timeout_s,
        "until": settings.until,
        "all": settings.prune_all,
        "now": now,
        "last_run_ts": row.get("last_started_ts"),
        "last_finished_ts": row.get("last_finished_ts"),
        "last_result": row.get("last_result"),
        "last_reclaimed": row.get("last_reclaimed"),
        "last_reclaimed_bytes": row.get("last_reclaimed_bytes"),
        "last_error": row.get("last_error"),
        "last_error_kind": row.get("last_error_kind"),
        "last_success_ts": row.get("last_success_ts"),
        "in_flight": in_flight,
        "next_eligible_ts": eligible,
        "eligible_now": settings.enabled
        and settings.target is not None
        and (eligible is None or eligible <= now),
        "notify": {
            "telegram": settings.notify_enabled,
            "min_gb": settings.notify_min_gb,
        },
        "recent_runs": [run_view(run) for run in runs],
    }


def _not_after(ts: float | None, now: float) -> float | None:
    # after the clock stepped back, a future time would keep `time() - x` negative, and a
    # staleness alert silent, until the clock caught up
    return None if ts is None else min(ts, now)


def state_gauges(settings: Settings, row: dict[str, Any] | None, now: float) -> dict[str, Any]:
    """What /metrics shows of the state: the row alone, never the run history."""
    row = row or {}
    return {
        "can_run": settings.enabled and settings.target is not None,
        "in_flight": row.get("inflight_run_id") is not None,
        "last_success_ts": _not_after(row.get("last_success_ts"), now),
        "last_run_ts": _not_after(row.get("last_started_ts"), now),
        "next_eligible_ts": next_eligible_ts(TargetState.from_mapping(row), settings.policy),
        "last_reclaimed_bytes": row.get("last_reclaimed_bytes"),
    }


def human_time(ts: float | None) -> str:
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def human_delta(seconds: float) -> str:
    """`3h 12m`, `45s`: how far away, for people."""
    seconds = abs(int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


MARK_PX = 6


class BarState(StrEnum):
    OK = "ok"
    RUNNING = "running"
    FAILED = "failed"


def _bar_state(result: str | None) -> BarState:
    if result == Result.OK:
        return BarState.OK
    if result == Result.RUNNING:
        return BarState.RUNNING
    return BarState.FAILED  # failed, or lost with its worker


def reclaimed_bars(runs: list[dict[str, Any]], width: int = 600, height: int = 140) -> list[dict]:
    """Bars for a chart of reclaimed space, oldest run first, scaled to the largest.
    A run that failed or is still running has nothing to show: a small mark says which."""
    ordered = list(reversed(runs))
    largest = max((run.get("reclaimed_bytes") or 0 for run in ordered), default=0) or 1
    slot = width / max(len(ordered), 1)
    bars = []
    for index, run in enumerate(ordered):
        size = run.get("reclaimed_bytes") or 0
        state = _bar_state(run.get("result"))
        bar_height = round(size / largest * (height - 20), 1) if size else 0
        if state != BarState.OK:
            bar_height = MARK_PX
        bars.append(
            {
                "x": round(index * slot + slot * 0.15, 1),
                "y": round(height - bar_height, 1),
                "width": round(slot * 0.7, 1),
                "height": bar_height,
                "label": run.get("reclaimed") or ("0B" if state == BarState.OK else str(state)),
                "state": state,
                "id": run.get("id"),
            }
        )
    return bars
