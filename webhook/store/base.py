"""The SQL of every backend, written once and made from the records.

Each table's columns are its record's fields (`TABLES`): the schema, every SELECT and
INSERT and a finished run's UPDATE are built from them, and `ensure_schema` adds any
declared column a table lacks, so a new field is a new column with no other edit. A
backend (sqlite.py, postgres.py) brings its connections and its dialect: how a
transaction starts and locks a row, the column types, the key of a new run.
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import Field, asdict, fields
from typing import Any, ClassVar, TypeVar

from webhook.core.decision import Result, TargetState, interval_start
from webhook.core.disk import Measure
from webhook.core.forecast import Forecast, Sample, SampleKind, run_samples
from webhook.core.outcome import ErrorKind, RunOutcome, Step
from webhook.store.records import (
    DELIVERIES_LIMIT,
    HISTORY_LIMIT,
    LOST_ERROR,
    OUTCOME_COLUMNS,
    SAMPLES_KEPT,
    SAMPLES_KEPT_S,
    DeliveryRecord,
    NewRun,
    RunRecord,
    SampleRecord,
    StateConflict,
    StateDump,
    StoreUnavailable,
    TargetRecord,
)

# each table and the record its rows are, and the table's key
TABLES: dict[str, type[Any]] = {
    "targets": TargetRecord,
    "runs": RunRecord,
    "deliveries": DeliveryRecord,
    "samples": SampleRecord,
}
KEYS = {"targets": "target", "runs": "id", "deliveries": "id", "samples": "id"}
# every name in the SQL built below is a table or a field of our own, never a value
INDEXES = (
    "runs_by_target ON runs (target, id)",
    "deliveries_by_time ON deliveries (seen_ts)",
    "samples_by_target ON samples (target, ts)",
)
SELECT = {
    table: f"SELECT {', '.join(field.name for field in fields(record))} FROM {table}"  # noqa: S608
    for table, record in TABLES.items()
}
# what deciding reads of a target's row: its decision state alone, on every trigger
SELECT_STATE = f"SELECT {', '.join(f.name for f in fields(TargetState))} FROM targets"  # noqa: S608
# each step is an index lookup (time, insertion order), never a scan, as it runs under the
# write lock on every signed request; `{order}` is the order rows were inserted in
EXPIRE_DELIVERIES = "DELETE FROM deliveries WHERE seen_ts < ?"
CAP_DELIVERIES = "DELETE FROM deliveries WHERE {order} <= (SELECT max({order}) FROM deliveries) - ?"
# the host's last measurement, `last_X` a Measure's `X` (`_measured`)
MEASUREMENT = tuple(field.name for field in fields(Measure))
# a target's `last_X` is its last run's outcome `X`
LAST_OF_OUTCOME = {
    f"last_{name}": name
    for name in OUTCOME_COLUMNS
    if f"last_{name}" in TargetRecord.__dataclass_fields__ and name not in MEASUREMENT
}
# what a target's row holds of a run in flight, and when to try again after a refusal
FREED = ("inflight_run_id", "inflight_started_ts", "lease_expires_ts", "retry_at_ts")
TIMES = tuple(field.name for field in fields(TargetState) if field.name.endswith("_ts"))

Record = TypeVar("Record")


def _measured(samples: Sequence[Sample]) -> dict[str, Any]:
    """The host's last measurement as `samples` (oldest first) tell it: each figure the
    newest one read, and when the disk was last read; a figure none read stays as kept."""
    row = {
        f"last_{name}": value
        for sample in samples
        for name in MEASUREMENT
        if (value := getattr(sample, name)) is not None
    }
    read = [sample.ts for sample in samples if sample.disk_free is not None]
    return row | ({"last_measured_ts": read[-1]} if read else {})


def _kind(field: Field[Any]) -> str:
    """A field's type without its `| None`: what its column keeps and how it is read."""
    assert isinstance(field.type, str)  # the records' modules defer their annotations
    return field.type.removesuffix(" | None")


def _error_kind(value: str | None) -> ErrorKind | None:
    try:
        return ErrorKind(value) if value else None
    except ValueError:  # a kind a later version wrote: the error text still says what
        return None


def _steps(text: str | None) -> tuple[Step, ...]:
    """A run's steps as stored; an unreadable entry (written by a later version) is left out."""
    steps: list[Step] = []
    for item in json.loads(text) if text else []:
        try:
            item["error_kind"] = ErrorKind(item["error_kind"]) if item.get("error_kind") else None
            steps.append(Step(**item))
        except (TypeError, ValueError, AttributeError):
            continue
    return tuple(steps)


def _forecast(text: str | None) -> Forecast | None:
    """A stored forecast; None when unreadable (written by another version)."""
    try:
        return Forecast(**json.loads(text)) if text else None
    except (TypeError, ValueError):
        return None


def _notes(text: str | None) -> tuple[str, ...]:
    found = json.loads(text) if text else []
    return tuple(str(note) for note in found) if isinstance(found, list) else ()


# how a field of each type is kept (enums are kept as their text, other types as they are)
ENCODE: dict[str, Callable[[Any], Any]] = {
    "tuple[Step, ...]": lambda steps: json.dumps([asdict(step) for step in steps]),
    "tuple[str, ...]": lambda notes: json.dumps(list(notes)),
    "Forecast": lambda found: None if found is None else json.dumps(asdict(found)),
}
DECODE: dict[str, Callable[[Any], Any]] = {
    "Result": lambda value: Result(value) if value else None,
    "ErrorKind": _error_kind,
    # SQLite keeps a boolean as 0/1
    "bool": lambda value: None if value is None else bool(value),
    "tuple[Step, ...]": _steps,
    "tuple[str, ...]": _notes,
    "Forecast": _forecast,
    "SampleKind": SampleKind,
}
KINDS = {table: {f.name: _kind(f) for f in fields(record)} for table, record in TABLES.items()}

# how each field of a record (a table's, or TargetState) is read from its column
_DECODERS = {
    record_type: [(f.name, DECODE.get(_kind(f))) for f in fields(record_type)]
    for record_type in (*TABLES.values(), TargetState)
}


def clean(parameters: Sequence[Any]) -> list[Any]:
    """A statement's parameters as every backend writes them: text without NUL, which
    PostgreSQL's text cannot hold and a host's output or a request's field may carry (SQLite
    then keeps the same text), and an enum as its plain text."""
    return [value.replace("\x00", "") if isinstance(value, str) else value for value in parameters]


def encode(table: str, values: Mapping[str, Any]) -> list[Any]:
    kinds = KINDS[table]
    return [
        ENCODE[kinds[name]](value) if kinds.get(name) in ENCODE else value
        for name, value in values.items()
    ]


def values_of(item: Any) -> dict[str, Any]:
    """A record's fields by name (`asdict` would turn its steps into dicts too)."""
    return {field.name: getattr(item, field.name) for field in fields(item)}


def record(record_type: type[Record], row: Any) -> Record:
    """A row (column -> value: a dict or a `sqlite3.Row`) as its table's record."""
    return record_type(
        **{
            name: decode(row[name]) if decode else row[name]
            for name, decode in _DECODERS[record_type]
        }
    )


def state_from(row: Any) -> TargetState:
    """The decision state in a `targets` row; a target without one has none yet."""
    return record(TargetState, row) if row is not None else TargetState()


class Store(ABC):
    """The state over SQL. A backend (sqlite.py, postgres.py) gives `_read` (a connection
    for a read, the schema current) and `_write` (one in a transaction), and its dialect
    below; every statement is written with `?` placeholders. Every method raises
    StoreUnavailable when the database cannot be reached; none decides."""

    database: str
    version: ClassVar[int]
    # the SQL type of each field type (the rest are TEXT) and of a new run's id
    types: ClassVar[Mapping[str, str]]
    run_id: ClassVar[str]
    # what locks the rows a write transaction read (empty when it locks the database)
    lock: ClassVar[str] = ""
    # the order deliveries were inserted in, and columns kept for the backend only
    delivery_order: ClassVar[str] = "rowid"
    extra_columns: ClassVar[Mapping[str, str]] = {}
    extra_indexes: ClassVar[Sequence[str]] = ()

    def __init__(self) -> None:
        # False until the schema is current: made on first use and retried after a failure
        # (a volume that was full at start), so no restart is needed once it is usable
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    @abstractmethod
    def _read(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    @abstractmethod
    def _write(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _execute(self, connection: Any, sql: str, parameters: Sequence[Any] = ()) -> Any:
        """Every statement of the store: its parameters `clean`ed."""
        return connection.execute(sql, clean(parameters))

    @abstractmethod
    def _migration(self, connection: Any) -> AbstractContextManager[Any]:
        """The transaction (and lock) in which one worker or replica migrates at a time."""
        raise NotImplementedError

    @abstractmethod
    def _version(self, connection: Any) -> int:
        raise NotImplementedError

    @abstractmethod
    def _set_version(self, connection: Any) -> None:
        raise NotImplementedError

    # the schema

    def _column(self, table: str, field: Field[Any]) -> str:
        kind = _kind(field)
        if field.name == KEYS[table]:
            return f"{field.name} {self.run_id if kind == 'int' else 'TEXT PRIMARY KEY'}"
        column = f"{field.name} {self.types.get(kind, 'TEXT')}"
        if isinstance(field.default, bool):
            column += f" NOT NULL DEFAULT {str(field.default).lower()}"
        elif "None" not in str(field.type) and not kind.startswith("tuple"):
            column += " NOT NULL"
        return column

    def _migrate(self, connection: Any) -> None:
        """Bring a database of any earlier version to this one, once: every table made if
        missing, every declared column added if missing."""
        if self._schema_ready:  # every call but the first: no lock to take
            return
        with self._schema_lock:
            if not self._schema_ready:
                with self._migration(connection):
                    self._upgrade(connection)
                self._schema_ready = True

    def _upgrade(self, connection: Any) -> None:
        version = self._version(connection)
        if version > self.version:
            raise StoreUnavailable(
                f"{self.database} has schema version {version}, newer than this"
                f" prunehook's {self.version}: upgrade prunehook"
            )
        for table, record_type in TABLES.items():
            columns = [self._column(table, field) for field in fields(record_type)]
            columns += [self.extra_columns[table]] if table in self.extra_columns else []
            self._execute(connection, f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(columns)})")
            present = self._execute(connection, f"SELECT * FROM {table} LIMIT 0").description  # noqa: S608
            for field in fields(record_type):
                if field.name not in {column[0] for column in present}:
                    column = self._column(table, field)
                    self._execute(connection, f"ALTER TABLE {table} ADD COLUMN {column}")
        for index in (*INDEXES, *self.extra_indexes):
            self._execute(connection, f"CREATE INDEX IF NOT EXISTS {index}")
        if version < self.version:  # no write at each start of a current schema
            self._set_version(connection)

    def ensure_schema(self) -> None:
        """Create or migrate the schema; idempotent, retried after a failure."""
        with self._read():
            pass

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers."""
        with self._read() as connection:
            self._execute(connection, "SELECT 1").fetchone()

    def schema_version(self) -> int:
        with self._read() as connection:
            return self._version(connection)

    # statements made from a table's columns

    def _insert(
        self,
        connection: Any,
        table: str,
        values: Mapping[str, Any],
        then: str = "",
        then_parameters: Sequence[Any] = (),
    ) -> Any:
        names, marks = ", ".join(values), ", ".join("?" * len(values))
        sql = f"INSERT INTO {table} ({names}) VALUES ({marks}){then}"  # noqa: S608
        return self._execute(connection, sql, [*encode(table, values), *then_parameters])

    def _upsert(self, connection: Any, table: str, values: Mapping[str, Any]) -> None:
        key = KEYS[table]
        updates = ", ".join(f"{name} = excluded.{name}" for name in values if name != key)
        self._insert(connection, table, values, f" ON CONFLICT ({key}) DO UPDATE SET {updates}")

    def _update(
        self, connection: Any, table: str, values: Mapping[str, Any], where: Mapping[str, Any]
    ) -> int:
        """UPDATE `values` in the rows whose columns are `where`'s; how many rows."""
        assignments = ", ".join(f"{name} = ?" for name in values)
        conditions = " AND ".join(f"{name} = ?" for name in where)
        sql = f"UPDATE {table} SET {assignments} WHERE {conditions}"  # noqa: S608
        parameters = encode(table, values) + encode(table, where)
        return int(self._execute(connection, sql, parameters).rowcount)

    def _insert_run(self, connection: Any, values: Mapping[str, Any]) -> int:
        return int(self._insert(connection, "runs", values, " RETURNING id").fetchall()[0]["id"])

    # the claim and what follows it

    def _row(self, connection: Any, target: str, lock: bool = False, whole: bool = False) -> Any:
        """A target's row: its decision state's columns, or with `whole` every column."""
        select = SELECT["targets"] if whole else SELECT_STATE
        sql = select + " WHERE target = ?" + (self.lock if lock else "")
        return self._execute(connection, sql, (target,)).fetchone()

    def _locked_state(self, connection: Any, target: str) -> TargetState:
        if self.lock:  # a row lock needs a row: concurrent claims of a new target lock this one
            sql = "INSERT INTO targets (target) VALUES (?) ON CONFLICT (target) DO NOTHING"
            self._execute(connection, sql, (target,))
        return state_from(self._row(connection, target, lock=True))

    def read_state(self, target: str) -> TargetState:
        """What deciding needs of a target (a backend may answer from what it last read
        while its database is away)."""
        with self._read() as connection:
            return state_from(self._row(connection, target))

    def claim(
        self,
        target: str,
        expected: TargetState,
        run: NewRun,
        now: float,
        lease_s: float,
        *,
        critical: bool = False,
    ) -> int | None:
        """Record `run` as in flight when the state is still `expected`; its id, or None.
        An expected run in flight (its lease expired) is given up as lost; the start that
        takes over counts for the interval, as `decide` never makes a takeover critical.
        A `critical` start (`Decision.critical`) leaves the interval where it was until its
        finish says it found a prune needed: a stale alert the run's own measure contradicts
        moves no due prune away."""
        with self._write() as connection:
            if self._locked_state(connection, target) != expected:
                return None
            if expected.inflight_run_id is not None:
                self._give_up_lost_run(connection, target, expected.inflight_run_id, now)
            run_id = self._insert_run(
                connection,
                {"target": target, "started_ts": now, "result": Result.RUNNING, **values_of(run)},
            )
            self._upsert(
                connection,
                "targets",
                {
                    "target": target,
                    "inflight_run_id": run_id,
                    "inflight_started_ts": now,
                    "lease_expires_ts": now + lease_s,
                    "last_started_ts": now,
                    "last_run_id": run_id,
                    # a critical start writes the start it counts from, so a row whose column
                    # is empty (written before it existed) keeps its last start, not this one
                    "interval_started_ts": interval_start(expected) if critical else now,
                    "uncounted_run_id": run_id if critical else None,
                },
            )
            return run_id

    def correct_times(self, target: str, expected: TargetState, corrected: TargetState) -> bool:
        """Write `corrected`'s times (capped after a clock step) when the state is still
        `expected`; False when it changed meanwhile."""
        with self._write() as connection:
            if self._locked_state(connection, target) != expected:
                return False
            times = {name: getattr(corrected, name) for name in TIMES}
            self._update(connection, "targets", times, {"target": target})
            return True

    def renew_lease(self, target: str, run_id: int, expires_ts: float) -> bool:
        """Extend the lease of the run in flight; False when it no longer owns the target."""
        with self._write() as connection:
            owner = {"target": target, "inflight_run_id": run_id}
            return self._update(connection, "targets", {"lease_expires_ts": expires_ts}, owner) == 1

    def _give_up_lost_run(self, connection: Any, target: str, run_id: int, now: float) -> None:
        lost = {
            "result": Result.LOST,
            "finished_ts": now,
            "error": LOST_ERROR,
            "error_kind": ErrorKind.LOST,
        }
        self._update(connection, "runs", lost, {"id": run_id, "result": Result.RUNNING})
        self._update(
            connection,
            "targets",
            {f"last_{name}": value for name, value in lost.items()} | dict.fromkeys(FREED),
            {"target": target, "inflight_run_id": run_id},
        )

    def finish(self, target: str, run_id: int, outcome: RunOutcome, now: float) -> bool:
        """Record how a run ended; False when a newer run owns the target (history only)."""
        result = Result.OK if outcome.ok else Result.FAILED
        with self._write() as connection:
            ran = {name: getattr(outcome, name) for name in OUTCOME_COLUMNS}
            ran |= {"finished_ts": now, "result": result}
            self._update(connection, "runs", ran, {"id": run_id})
            row = self._row(connection, target, lock=True)
            owned = row is not None and row["inflight_run_id"] == run_id
            if owned:
                self._update(
                    connection,
                    "targets",
                    self._finished(state_from(row), outcome, result, now),
                    {"target": target},
                )
            self._execute(
                connection,
                "DELETE FROM runs WHERE target = ? AND result != ? AND id NOT IN ("
                " SELECT id FROM runs WHERE target = ? ORDER BY id DESC LIMIT ?)",
                (target, Result.RUNNING, target, HISTORY_LIMIT),
            )
            return owned

    @staticmethod
    def _finished(
        last: TargetState, outcome: RunOutcome, result: Result, now: float
    ) -> dict[str, Any]:
        """A target's row after its run finished. A run that found no prune needed (a
        critical start its own measure did not bear out) pruned nothing: the last prune's
        result, error, success and finish stay, so a failed prune's retry still comes, and
        only how its fresh measure stands against the goals is written."""
        freed = {**dict.fromkeys(FREED), **_measured(run_samples(outcome, now))}
        if not outcome.needed:
            return freed | {
                "last_goal_met": outcome.goal_met,
                "last_free_short_bytes": outcome.free_short_bytes,
            }
        return {
            **freed,
            **{column: getattr(outcome, name) for column, name in LAST_OF_OUTCOME.items()},
            "last_finished_ts": now,
            "last_result": result,
            "last_success_ts": now if outcome.ok else last.last_success_ts,
            "retry_at_ts": None if outcome.retry_after_s is None else now + outcome.retry_after_s,
            # even a run that failed before it could measure counts from its start (the retry
            # delay applies)
            "interval_started_ts": last.inflight_started_ts,
        }

    # the watch's measures and every sample

    def claim_measures(self, due: Mapping[str, float], now: float, hold_s: float) -> list[str]:
        """Of the targets in `due` (name -> watch_interval_s), those whose last measure is at
        least that old and that no one is measuring: each now held for `hold_s`, in one
        transaction. The ones returned are this caller's to measure. A last measure more
        than an interval ahead of `now`, or a hold ending further ahead than an interval (a
        failed measure's rest) and twice its length, is from before the clock was stepped
        back: stale (the margins leave a replica whose clock reading came a moment before
        another's its measure)."""
        claimed = []
        with self._write() as connection:
            for target, interval_s in due.items():
                held = self._insert(
                    connection,
                    "targets",
                    {"target": target, "measuring_until_ts": now + hold_s},
                    " ON CONFLICT (target) DO UPDATE SET"
                    " measuring_until_ts = excluded.measuring_until_ts"
                    " WHERE (coalesce(targets.last_measured_ts, 0) <= ?"
                    " OR targets.last_measured_ts > ?)"
                    " AND (coalesce(targets.measuring_until_ts, 0) <= ?"
                    " OR targets.measuring_until_ts > ?)",
                    (now - interval_s, now + interval_s, now, now + interval_s + 2 * hold_s),
                )
                if held.rowcount == 1:
                    claimed.append(target)
        return claimed

    def add_samples(
        self,
        target: str,
        samples: Sequence[Sample],
        since: float,
        draw: Callable[[list[SampleRecord]], Forecast],
        *,
        latest: bool = False,
        ended: float | None = None,
        held: float | None = None,
        rest_until: float | None = None,
    ) -> tuple[list[SampleRecord], Forecast]:
        """Keep `samples` (oldest first: the watch's, or a run's before and after its prunes,
        which may share a time; none for a measure that read nothing), drop the samples past
        SAMPLES_KEPT_S and SAMPLES_KEPT, and keep the forecast `draw` makes of those taken at
        or after `since` (oldest first): both returned. One transaction.

        `latest`: the watch's own measure, which the target's last measurement follows (a
        run's is `finish`'s to keep: only it knows whether the run still owns the target),
        unless a run recorded one while the measure ran, which ended at `ended`.
        `held`: these are the measure `claim_measures` held until then (`now + hold_s`),
        and that hold ends, or with `rest_until` (a measure that read nothing) lasts until
        then; a hold taken since (this measure outlasted its own), or a run's samples, leave
        a measure held."""
        with self._write() as connection:
            for sample in samples:
                self._insert(connection, "samples", {"target": target, **values_of(sample)})
            if samples:
                self._execute(
                    connection,
                    "DELETE FROM samples WHERE target = ? AND (ts < ? OR id <= ("
                    " SELECT id FROM samples WHERE target = ? ORDER BY id DESC LIMIT 1 OFFSET ?))",
                    (target, max(s.ts for s in samples) - SAMPLES_KEPT_S, target, SAMPLES_KEPT),
                )
            recent = self._samples(connection, target, since)
            found = draw(recent)
            fresh = (
                latest
                and samples
                and not self._measured_meanwhile(connection, target, samples[-1], ended)
            )
            kept = {"forecast": found, **(_measured(samples) if fresh else {})}
            self._update(connection, "targets", kept, {"target": target})
            if held is not None:
                self._update(
                    connection,
                    "targets",
                    {"measuring_until_ts": rest_until},
                    {"target": target, "measuring_until_ts": held},
                )
            return recent, found

    def _measured_meanwhile(
        self, connection: Any, target: str, sample: Sample, ended: float | None
    ) -> bool:
        """Whether a run recorded the target's last measurement while the watch's measure ran
        (from its sample's time to `ended`): that one read the disk later. One further ahead
        is from before the clock was stepped back, and the measure replaces it."""
        if ended is None:
            return False
        sql = "SELECT last_measured_ts FROM targets WHERE target = ?"
        row = self._execute(connection, sql, (target,)).fetchone()
        stored = row["last_measured_ts"] if row else None
        return stored is not None and sample.ts < stored <= ended

    def _samples(self, connection: Any, target: str, since: float) -> list[SampleRecord]:
        sql = SELECT["samples"] + " WHERE target = ? AND ts >= ? ORDER BY ts, id"
        rows = self._execute(connection, sql, (target, since)).fetchall()
        return [record(SampleRecord, row) for row in rows]

    def samples(self, target: str, since: float) -> list[SampleRecord]:
        """The samples of `target` taken at or after `since`, oldest first."""
        with self._read() as connection:
            return self._samples(connection, target, since)

    # signed deliveries

    def remember_delivery(
        self, delivery_id: str, now: float, keep_s: float, pending_s: float
    ) -> bool:
        """Take a signed delivery's id; False when it is a replay: settled within `keep_s`,
        or taken by a request still pending (seen within `pending_s`). An id whose request
        never settled (its answer was a 5xx, or the worker died) is free again after
        `pending_s`, so the sender's retry is decided afresh."""
        with self._write() as connection:
            self._execute(connection, EXPIRE_DELIVERIES, (now - keep_s,))
            cap = CAP_DELIVERIES.format(order=self.delivery_order)
            self._execute(connection, cap, (DELIVERIES_LIMIT - 1,))
            taken = self._insert(
                connection,
                "deliveries",
                {"id": delivery_id, "seen_ts": now, "settled": False},
                " ON CONFLICT (id) DO UPDATE SET seen_ts = excluded.seen_ts"
                " WHERE deliveries.settled = false AND deliveries.seen_ts < ?",
                (now - pending_s,),
            )
            return bool(taken.rowcount == 1)

    def settle_delivery(self, delivery_id: str) -> None:
        """The request with this id was answered (2xx or 4xx): a replay is a duplicate."""
        with self._write() as connection:
            self._update(connection, "deliveries", {"settled": True}, {"id": delivery_id})

    def forget_delivery(self, delivery_id: str) -> None:
        """Free an unsettled id at once (its request failed with a 5xx)."""
        with self._write() as connection:
            sql = "DELETE FROM deliveries WHERE id = ? AND settled = false"
            self._execute(connection, sql, (delivery_id,))

    # readers

    def target_record(self, target: str) -> TargetRecord | None:
        with self._read() as connection:
            row = self._row(connection, target, whole=True)
            return record(TargetRecord, row) if row else None

    def target_records(self) -> dict[str, TargetRecord]:
        """Every stored target's row, by name (a fleet's /status and /metrics)."""
        with self._read() as connection:
            rows = self._execute(connection, SELECT["targets"]).fetchall()
            return {row["target"]: record(TargetRecord, row) for row in rows}

    def recent_runs(self, target: str, limit: int = 10, *, prunes: bool = False) -> list[RunRecord]:
        """The target's newest runs, newest first; with `prunes`, leaving out the ones that
        found no prune needed (RunRecord.needed)."""
        with self._read() as connection:
            needed = " AND needed" if prunes else ""
            sql = SELECT["runs"] + f" WHERE target = ?{needed} ORDER BY id DESC LIMIT ?"
            rows = self._execute(connection, sql, (target, limit)).fetchall()
            return [record(RunRecord, row) for row in rows]

    def run(self, run_id: int) -> RunRecord | None:
        with self._read() as connection:
            row = self._execute(connection, SELECT["runs"] + " WHERE id = ?", (run_id,)).fetchone()
            return record(RunRecord, row) if row else None

    def adopt_legacy_state(self, name: str, preferred_key: str | None = None) -> str | None:
        """Carry a row keyed the old way (`user@host:port`) over to the target `name`; the
        old key, or None. Rows keyed so predate PostgreSQL: only SQLite has any."""
        return None

    @abstractmethod
    def close(self) -> None:
        raise NotImplementedError

    # moving a whole state between backends (`flask state copy`)

    def dump(self) -> StateDump:
        """Every target's row, the whole run history and the delivery ids, oldest first."""
        with self._read() as connection:

            def every(record_type: type[Record], table: str, order: str) -> tuple[Record, ...]:
                rows = self._execute(connection, f"{SELECT[table]} ORDER BY {order}")
                return tuple(record(record_type, row) for row in rows.fetchall())

            return StateDump(
                every(TargetRecord, "targets", "target"),
                every(RunRecord, "runs", "id"),
                every(DeliveryRecord, "deliveries", self.delivery_order),
            )

    def load(self, dump: StateDump) -> None:
        """Add a dumped state in one transaction: rows, history (new run ids, the rows'
        references mapped to them) and delivery ids. Refuses (StateConflict, nothing
        written) when a target already has a row with state here."""
        with self._write() as connection:
            taken = [
                target.target
                for target in dump.targets
                if (row := self._row(connection, target.target, lock=True))
                and row["last_run_id"] is not None
            ]
            if taken:
                raise StateConflict(sorted(taken))
            new_ids: dict[int | None, int | None] = {None: None}
            for run in dump.runs:
                values = values_of(run)
                new_ids[values.pop("id")] = self._insert_run(connection, values)
            for target in dump.targets:
                values = values_of(target)
                for column in ("last_run_id", "inflight_run_id"):
                    values[column] = new_ids.get(values[column])
                self._upsert(connection, "targets", values)
            for delivery in dump.deliveries:
                self._insert(
                    connection, "deliveries", values_of(delivery), " ON CONFLICT DO NOTHING"
                )
