"""What a run does after its age prune, from what it measured: pure, for the runs and
`check` alike (DESIGN.md, "Disk-aware pruning").

Stage 2 runs only while a goal is missed, pruning the cache down to the bound
`keep_storage_bytes` computes, as the kubelet's image GC does.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from webhook.core.disk import Goals, Measure, assess, keep_storage_bytes


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
