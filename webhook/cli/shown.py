"""How the commands speak to people: times as `in 3 h 12 min`, sizes as Docker prints
them, one line per target. Pure: what to say from what was answered."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from webhook.core.decision import Answer, Result
from webhook.core.duration import span
from webhook.core.sizes import human_size
from webhook.core.targets import Target
from webhook.service import TargetResult
from webhook.store import RunRecord
from webhook.web.report import fill_headline, host_state, pruning, size_text


def relative(ts: float | None, now: float) -> str:
    """`in 3 h 12 min`, `5 min ago`, `now`; `never` for no time."""
    if ts is None:
        return "never"
    if abs(ts - now) < 1:
        return "now"
    return f"in {span(ts - now)}" if ts > now else f"{span(now - ts)} ago"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned on the widest cell; the last column runs free."""
    widths = [max(len(row[i]) for row in (headers, *rows)) for i in range(len(headers) - 1)]
    lines = []
    for row in (headers, *rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def _free(shown: dict[str, Any]) -> str:
    free, size = shown.get("disk_free_bytes"), shown.get("disk_size_bytes")
    if free is None or not size:
        return "—"
    return f"{human_size(free)} ({100 * free / size:.0f}%)"


def _freed(freed: int | None, otherwise: str) -> str:
    """df's freed bytes; `otherwise` (Docker's count) when other writes outweighed the prune."""
    return size_text(freed) if freed is not None and freed >= 0 else otherwise


def _next(shown: dict[str, Any], now: float) -> str:
    if pruning(shown):
        return "pruning now"
    if not shown["enabled"]:
        return "disabled"
    return "now" if shown["eligible_now"] else relative(shown["next_eligible_ts"], now)


STATUS_HEADERS = ("TARGET", "STATE", "LAST PRUNE", "FREED", "DISK FREE", "CACHE", "NEXT", "FILL")


def status_row(shown: dict[str, Any], now: float) -> list[str]:
    """One target of GET /status, as `prunehook status` lists it."""
    return [
        shown["name"],
        str(host_state(shown)),
        relative(shown["last_run_ts"], now),
        _freed(shown.get("last_freed_bytes"), shown["last_reclaimed"] or "—"),
        _free(shown),
        size_text(shown.get("build_cache_bytes")),
        _next(shown, now),
        fill_headline(shown, now),
    ]


NO_TARGET = "no target: set PRUNEHOOK_SSH_HOST or PRUNEHOOK_TARGETS_FILE"


def status_table(targets: Sequence[dict[str, Any]], now: float) -> str:
    return table(STATUS_HEADERS, [status_row(shown, now) for shown in targets])


# the hint where a first prune frees nothing: only cache older than `until` goes
NOTHING_OLD_ENOUGH = (
    "nothing was older than until={until}: fresh cache stays. To bound the cache now, give"
    " the target a max_cache or min_free goal (disk-aware pruning)"
)


def _run_words(run: RunRecord, target: Target | None) -> str:
    if run.result != Result.OK:
        return f"{run.result}: {run.error or 'see prunehook status'}"
    said = f"pruned: freed {_freed(run.freed_bytes, size_text(run.reclaimed_bytes))}"
    if run.duration_s is not None:
        said += f" in {run.duration_s:.1f} s"
    if run.disk_free_after is not None and run.disk_size:
        said += f"; {human_size(run.disk_free_after)} free of {human_size(run.disk_size)}"
    if run.goal_met is False:
        missed_by = run.free_short_bytes or run.cache_over_bytes
        said += f"; a goal is still missed by {size_text(missed_by)}"
    if run.reclaimed_bytes == 0 and not (target and target.policy.goals.any):
        until = target.policy.until if target else "?"  # Docker's count: nothing was old enough
        said += f"\n  {NOTHING_OLD_ENOUGH.format(until=until)}"
    return said


def result_line(result: TargetResult, target: Target | None, now: float) -> str:
    """One target's answer to `prunehook prune`; `target` is the one it names."""
    name = result.target or "—"
    if result.answer == Answer.STARTED and result.run is not None:
        return f"{name}: {_run_words(result.run, target)}"
    said = f"{name}: {result.answer}: {result.reason}"
    if result.next_eligible_ts is not None:
        said += f"; next allowed {relative(result.next_eligible_ts, now)}"
    return said
