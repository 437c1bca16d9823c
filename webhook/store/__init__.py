"""The state store: what every backend keeps, and the protocol the service uses.

A backend stores; it never decides. `claim` is a compare-and-set: it records a
new run only when the target's state is still the one the service decided
on, so concurrent requests in any number of workers (or replicas) start at
most one prune per target.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Protocol

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


@dataclass(frozen=True, kw_only=True)
class SampleRecord(Sample):
    """A sample as kept: the `samples` table's row."""

    id: int | None = None
    target: str


# the columns a finish writes from the run's outcome: RunOutcome and RunRecord name them alike
OUTCOME_COLUMNS = tuple(
    field.name for field in fields(RunRecord) if field.name in RunOutcome.__dataclass_fields__
)


_STATE_FIELDS = tuple(field.name for field in fields(TargetState))


@dataclass(frozen=True)
class TargetRecord(TargetState):
    """A target's row: its decision state (its last run, the run in flight with its lease),
    then what /status shows of its last run."""

    target: str
    last_reclaimed: str | None = None
    last_reclaimed_bytes: int | None = None
    last_error: str | None = None
    last_error_kind: ErrorKind | None = None
    # the last measurement of the host (kept when a run measured nothing) and how the last
    # run stood against the goals
    last_disk_size: int | None = None
    last_disk_free: int | None = None
    last_cache: int | None = None
    last_measured_ts: float | None = None
    last_freed_bytes: int | None = None
    last_goal_met: bool | None = None
    last_free_short_bytes: int | None = None
    # a measure of the watch is under way (in some process) until then
    measuring_until_ts: float | None = None
    # the line through the recent samples (webhook.core.forecast), made at the last sample
    forecast: Forecast | None = None

    @property
    def state(self) -> TargetState:
        return TargetState(**{name: getattr(self, name) for name in _STATE_FIELDS})


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


class Store(Protocol):
    """What the service needs of a backend. Every method raises StoreUnavailable when the
    database cannot be reached; none decides."""

    def ensure_schema(self) -> None:
        """Create or migrate the schema; idempotent, retried after a failure."""

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers."""

    def read_state(self, target: str) -> TargetState:
        """What deciding needs; may answer from a cache that the backend knows is current."""

    def claim(
        self, target: str, expected: TargetState, run: NewRun, now: float, lease_s: float
    ) -> int | None:
        """Record `run` as in flight when the state is still `expected`; its id, or None.

        An expected run in flight (its lease expired) is given up as lost.
        """

    def correct_times(self, target: str, expected: TargetState, corrected: TargetState) -> bool:
        """Write `corrected`'s times (capped after a clock step) when the state is still
        `expected`; False when it changed meanwhile."""

    def renew_lease(self, target: str, run_id: int, expires_ts: float) -> bool:
        """Extend the lease of the run in flight; False when it no longer owns the target."""

    def finish(self, target: str, run_id: int, outcome: RunOutcome, now: float) -> bool:
        """Record how a run ended; False when a newer run owns the target (history only)."""

    def target_record(self, target: str) -> TargetRecord | None: ...

    def target_records(self) -> dict[str, TargetRecord]:
        """Every stored target's row, by name (a fleet's /status and /metrics)."""

    def recent_runs(self, target: str, limit: int = 10) -> list[RunRecord]: ...

    def claim_measures(self, due: Mapping[str, float], now: float, hold_s: float) -> list[str]:
        """Of the targets in `due` (name -> watch_interval_s), those whose last measure is at
        least that old and that no one is measuring: each now held for `hold_s`, in one
        transaction. The ones returned are this caller's to measure."""

    def add_samples(
        self,
        target: str,
        samples: Sequence[Sample],
        since: float,
        draw: Callable[[list[SampleRecord]], Forecast],
    ) -> tuple[list[SampleRecord], Forecast]:
        """Keep `samples` (one or more, oldest first: the watch's, or a run's before and after
        its prunes, which may share a time), let the target's measure go, drop the samples
        past SAMPLES_KEPT_S and SAMPLES_KEPT, and keep the forecast `draw` makes of those
        taken at or after `since` (oldest first): both returned. One transaction."""

    def samples(self, target: str, since: float) -> list[SampleRecord]:
        """The samples of `target` taken at or after `since`, oldest first."""

    def run(self, run_id: int) -> RunRecord | None: ...

    def remember_delivery(
        self, delivery_id: str, now: float, keep_s: float, pending_s: float
    ) -> bool:
        """Take a signed delivery's id; False when it is a replay: settled within `keep_s`,
        or taken by a request still pending (seen within `pending_s`). An id whose request
        never settled (its answer was a 5xx, or the worker died) is free again after
        `pending_s`, so the sender's retry is decided afresh."""

    def settle_delivery(self, delivery_id: str) -> None:
        """The request with this id was answered (2xx or 4xx): a replay is a duplicate."""

    def forget_delivery(self, delivery_id: str) -> None:
        """Free an unsettled id at once (its request failed with a 5xx)."""

    def adopt_legacy_state(self, name: str, preferred_key: str | None = None) -> str | None:
        """Carry a row keyed the old way (`user@host:port`) over to the target `name`."""

    def close(self) -> None: ...
