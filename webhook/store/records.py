"""What the store keeps: each table's record (its columns are the record's fields), and
the bounds of what it keeps."""

from __future__ import annotations

from dataclasses import dataclass, fields

from webhook.core.decision import Result, TargetState
from webhook.core.forecast import Forecast, Sample
from webhook.core.outcome import ErrorKind, Measured, RunOutcome

HISTORY_LIMIT = 100
# samples kept per target: a week, and at most this many (six hours at one a quarter
# minute, a day at one a minute): the forecast reads its window, the page its chart
SAMPLES_KEPT_S = 7 * 86400
SAMPLES_KEPT = 1440
# signed delivery ids kept at most, the oldest dropped first
DELIVERIES_LIMIT = 100_000
LOST_ERROR = "the worker running this prune died or hung; its lease expired"


class StoreUnavailable(Exception):
    """The database cannot be read or written right now (locked, read-only, full, down)."""


@dataclass(frozen=True)
class NewRun:
    """What a claim records of the run it starts."""

    trigger: str
    command: str
    worker_pid: int | None = None
    request_id: str | None = None
    # a run started ahead of a forecast: the forecast it acted on
    forecast: Forecast | None = None


@dataclass(frozen=True)
class RunRecord(Measured):
    """One run in a target's history. Its fields are the `runs` table's columns (base.py):
    a new field is a new column, which a finish writes from the RunOutcome field of the
    same name; what the run measured (`Measured`) is declared once, with RunOutcome."""

    id: int
    target: str
    trigger: str
    command: str
    started_ts: float
    result: Result
    finished_ts: float | None = None
    rc: int | None = None
    reclaimed: str | None = None
    reclaimed_bytes: int | None = None
    error: str | None = None
    error_kind: ErrorKind | None = None
    duration_s: float | None = None
    stdout_tail: str | None = None
    stderr_tail: str | None = None
    worker_pid: int | None = None
    request_id: str | None = None
    forecast: Forecast | None = None
    # False: a check that pruned nothing (RunOutcome.needed)
    needed: bool = True


@dataclass(frozen=True, kw_only=True)
class SampleRecord(Sample):
    """A sample as kept: the `samples` table's row."""

    id: int | None = None
    target: str


# the columns a finish writes from the run's outcome: RunOutcome and RunRecord name them alike
OUTCOME_COLUMNS = tuple(
    field.name for field in fields(RunRecord) if field.name in RunOutcome.__dataclass_fields__
)


@dataclass(frozen=True)
class TargetRecord(TargetState):
    """A target's row: its decision state (its last run, the run in flight with its lease),
    then what /status shows of its last run."""

    target: str
    last_reclaimed: str | None = None
    last_reclaimed_bytes: int | None = None
    last_error: str | None = None
    last_error_kind: ErrorKind | None = None
    # the last measurement of the host (each figure kept when a run or a measure could not
    # read it) and how the last run stood against the goals
    last_disk_size: int | None = None
    last_disk_free: int | None = None
    last_cache: int | None = None
    last_measured_ts: float | None = None
    last_freed_bytes: int | None = None
    last_goal_met: bool | None = None
    last_free_short_bytes: int | None = None
    # a measure of the watch is under way (in some process) until then, or the last one
    # failed and no process measures the host again before then
    measuring_until_ts: float | None = None
    # the line through the recent samples (webhook.core.forecast), made at the last sample
    forecast: Forecast | None = None


@dataclass(frozen=True)
class DeliveryRecord:
    id: str
    seen_ts: float
    # the column's default: ids remembered before it existed had all been answered
    settled: bool = True


@dataclass(frozen=True)
class StateDump:
    """A whole state, to move it between backends (`flask state copy`)."""

    targets: tuple[TargetRecord, ...]
    runs: tuple[RunRecord, ...]
    deliveries: tuple[DeliveryRecord, ...]


class StateConflict(Exception):
    """The destination already keeps state for these targets: nothing was copied."""

    def __init__(self, names: list[str]):
        self.names = names
        super().__init__(f"already has state for {', '.join(names)}")
