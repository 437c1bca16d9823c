"""What a run does after its age prune, from what it measured: pure, for the runs and
`check` alike (DESIGN.md, "Disk-aware pruning").

Stage 2 runs only while a goal is missed, pruning the cache down to the bound
`keep_storage_bytes` computes, as the kubelet's image GC does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum

from webhook.core.disk import FreeGoal, Goals, Measure, assess, keep_storage_bytes


class Next(StrEnum):
    DONE = "done"  # every goal is met, or none is set
    STAGE_2 = "stage_2"
    UNMEASURED = "unmeasured"  # a goal could not be measured
    NO_CACHE = "no_cache"  # a goal is missed and no build cache is left to prune
    CACHE_UNKNOWN = "cache_unknown"  # a goal is missed and the cache size is unknown


NOTES = {
    Next.UNMEASURED: "a goal could not be measured after stage 1: no stage 2",
    Next.NO_CACHE: "stage 2 not run: no build cache is left to prune",
    Next.CACHE_UNKNOWN: "stage 2 not run: the cache size is unknown, so no bound can be computed",
}


@dataclass(frozen=True)
class Plan:
    next: Next
    keep_storage_bytes: int | None = None

    @property
    def note(self) -> str | None:
        """Why no stage 2 runs, where a run should say so."""
        return NOTES.get(self.next)


def plan(goals: Goals, measure: Measure) -> Plan:
    """The step after the age prune, given the goals and the host as measured now."""
    met = assess(goals, measure).met
    if met is None:
        return Plan(Next.UNMEASURED if goals.any else Next.DONE)
    if met:
        return Plan(Next.DONE)
    bound = keep_storage_bytes(goals, measure)
    if bound is not None:
        return Plan(Next.STAGE_2, bound)
    return Plan(Next.NO_CACHE if measure.cache == 0 else Next.CACHE_UNKNOWN)


def unconfirmed(goals: Goals, critical_percent: float, measure: Measure) -> str | None:
    """Why a start on a trigger's word that the disk is critical is not borne out by the
    host's own measure (None: it is, or the disk could not be measured, and a disk that may
    be full is pruned): the disk is under `critical_percent` and no goal is missed."""
    used = measure.used_percent
    if used is None or used >= critical_percent or assess(goals, measure).met is False:
        return None
    return (
        f"not pruned: the trigger said the disk is critical, but it is {used:.1f}% used, "
        f"under critical_percent ({critical_percent:g}%), and no goal is missed"
    )


def over_critical(measure: Measure, critical_percent: float) -> int:
    """The bytes to free to bring the disk under `critical_percent`; 0 when it is."""
    used = measure.used_percent
    if used is None or used < critical_percent:
        return 0
    size, free = measure.disk_size, measure.disk_free
    assert size is not None and free is not None  # used_percent read them
    # int() would round a used space a fraction of a byte under the threshold up to it
    return max(1, math.floor(size - free - size * critical_percent / 100) + 1)


def critical_aim(goals: Goals, over: int, measure: Measure) -> Goals:
    """The goals of a run on a disk at or over `critical_percent`: `goals` (the target's, or
    the watch's aim), with free space enough to free `over` (`over_critical`) when
    `min_free` asks less (stage 2 would stop at goals already met, and every
    `critical_interval_s` another run would free nothing). Without goals the host's guard
    allows no stage 2 (`hosts add`): the age prune alone."""
    if not goals.any or not over or measure.disk_free is None:
        return goals
    wanted = measure.disk_free + over
    kept = goals.min_free.bytes_of(measure.disk_size) if goals.min_free else 0
    if kept is not None and kept >= wanted:
        return goals
    return replace(goals, min_free=FreeGoal(size=wanted))
