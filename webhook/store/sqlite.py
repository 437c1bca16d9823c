"""The state of each target and its recent runs, in SQLite.

Claiming a run is one `BEGIN IMMEDIATE` transaction that reads the row,
decides and writes the in-flight run, so concurrent requests in any number of
gunicorn workers start at most one prune. A plain read answers the common
case (a trigger inside the interval) without taking the write lock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webhook.core.decision import (
    Action,
    ClockStep,
    Decision,
    Policy,
    Result,
    TargetState,
    clock_step,
    decide,
)
from webhook.core.outcome import RunOutcome

HISTORY_LIMIT = 100
# signed delivery ids kept at most; rowids grow with each insert, so the oldest go first
DELIVERIES_LIMIT = 100_000
EXPIRE_DELIVERIES = "DELETE FROM deliveries WHERE seen_ts < ?"
CAP_DELIVERIES = "DELETE FROM deliveries WHERE rowid <= (SELECT max(rowid) FROM deliveries) - ?"
BUSY_TIMEOUT_MS = 5000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS targets (
    target TEXT PRIMARY KEY,
    last_run_id INTEGER,
    last_started_ts REAL,
    last_finished_ts REAL,
    last_result TEXT,
    last_reclaimed TEXT,
    last_reclaimed_bytes INTEGER,
    last_error TEXT,
    last_error_kind TEXT,
    last_success_ts REAL,
    inflight_run_id INTEGER,
    inflight_started_ts REAL,
    lease_expires_ts REAL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    target TEXT NOT NULL,
    trigger TEXT NOT NULL,
    command TEXT NOT NULL,
    started_ts REAL NOT NULL,
    finished_ts REAL,
    result TEXT NOT NULL,
    rc INTEGER,
    reclaimed TEXT,
    reclaimed_bytes INTEGER,
    error TEXT,
    error_kind TEXT,
    duration_s REAL,
    stdout_tail TEXT,
    stderr_tail TEXT,
    worker_pid INTEGER,
    request_id TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_target ON runs (target, id);
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,
    seen_ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_by_time ON deliveries (seen_ts);
"""


# columns added after the first schema: state files from then gain them at start
_ADDED_RUN_COLUMNS = (("worker_pid", "INTEGER"), ("request_id", "TEXT"))


class StoreUnavailable(Exception):
    """The database cannot be read or written right now (locked, read-only, missing)."""


@dataclass(frozen=True)
class Claim:
    decision: Decision
    run_id: int | None = None
    # set when stored times were ahead of `now` and this claim capped them
    clock_step: ClockStep | None = None


class Store:
    """One SQLite connection per thread, kept open: opening one per call (connect, pragma,
    reading the schema) cost more than the skip path's whole query."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._local = threading.local()
        # False until the schema exists: created on first use and retried after a failure
        # (a volume that was full at start), so no restart is needed once it is usable
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    def _open(self) -> sqlite3.Connection:
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreUnavailable(f"cannot create the folder of {self.path}: {error}") from error
        try:
            connection = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
            )
        except sqlite3.Error as error:
            raise StoreUnavailable(f"cannot open {self.path}: {error}") from error
        try:
            connection.row_factory = sqlite3.Row
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        except sqlite3.Error as error:
            connection.close()
            raise StoreUnavailable(f"cannot use {self.path}: {error}") from error
        return connection

    def close(self) -> None:
        """Close this thread's connection (others close with their threads)."""
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        self._forget_states()  # data_version numbers are per connection
        if connection is not None:
            connection.close()

    def _forget_states(self) -> None:
        self._local.states = {}
        self._local.data_version = None

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._open()
            self._forget_states()
        try:
            if not self._schema_ready:
                self._create_schema(connection)
                self._forget_states()
            yield connection
        except sqlite3.DatabaseError as error:
            # locked, read-only, unreadable or not a database: unavailable, so callers retry;
            # a constraint or SQL error is a bug and stays one
            if type(error) not in (sqlite3.OperationalError, sqlite3.DatabaseError):
                raise
            self.close()  # the next call starts from a fresh connection
            raise StoreUnavailable(str(error)) from error

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            finally:
                # this connection's own commits leave its data_version as it was
                self._forget_states()
            connection.execute("COMMIT")

    def init_schema(self) -> None:
        """Create the schema now (at start) rather than on first use; raises StoreUnavailable."""
        with self._connect():
            pass

    def _create_schema(self, connection: sqlite3.Connection) -> None:
        """Idempotent: every statement may run again after a partial failure."""
        with self._schema_lock:
            if self._schema_ready:
                return
            connection.execute("PRAGMA journal_mode = WAL")
            connection.executescript(_SCHEMA)
            present = {row["name"] for row in connection.execute("PRAGMA table_info(runs)")}
            for column, kind in _ADDED_RUN_COLUMNS:
                if column not in present:
                    connection.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")
            self._schema_ready = True

    def _row(self, connection: sqlite3.Connection, target: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = connection.execute(
            "SELECT * FROM targets WHERE target = ?", (target,)
        ).fetchone()
        return row

    def read_state(self, target: str) -> TargetState:
        """The state as last read by this thread while no connection has committed since
        (`PRAGMA data_version` says so for other connections, `_transaction` for this one):
        an alert storm's skips then cost one pragma each instead of a query and a row."""
        with self._connect() as connection:
            local = self._local
            version = connection.execute("PRAGMA data_version").fetchone()[0]
            if version != local.data_version:
                local.states = {}
                local.data_version = version
            state: TargetState | None = local.states.get(target)
            if state is None:
                state = TargetState.from_mapping(self._row(connection, target))
                local.states[target] = state
            return state

    def claim(
        self,
        target: str,
        now: float,
        policy: Policy,
        *,
        trigger: str,
        command: str,
        lease_s: float,
        force: bool = False,
        worker_pid: int | None = None,
        request_id: str | None = None,
    ) -> Claim:
        """Decide for `target` at `now`; when the decision is to start, record the run."""
        if not force:
            state = self.read_state(target)
            if clock_step(state, now, lease_s) is None:
                fast = decide(state, now, policy)
                if fast.action != Action.STARTED:
                    return Claim(fast)
        with self._transaction() as connection:
            state = TargetState.from_mapping(self._row(connection, target))
            step = clock_step(state, now, lease_s)
            if step is not None:
                self._write_capped_times(connection, target, step.state)
                state = step.state
            decision = decide(state, now, policy, force)
            if decision.action != Action.STARTED:
                return Claim(decision, clock_step=step)
            if decision.lost_run_id is not None:
                self._give_up_lost_run(connection, target, decision.lost_run_id, now)
            run_id = connection.execute(
                "INSERT INTO runs (target, trigger, command, started_ts, result, worker_pid,"
                " request_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (target, trigger, command, now, Result.RUNNING, worker_pid, request_id),
            ).lastrowid
            connection.execute(
                "INSERT INTO targets (target, inflight_run_id, inflight_started_ts,"
                " lease_expires_ts, last_started_ts, last_run_id) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (target) DO UPDATE SET inflight_run_id = excluded.inflight_run_id,"
                " inflight_started_ts = excluded.inflight_started_ts,"
                " lease_expires_ts = excluded.lease_expires_ts,"
                " last_started_ts = excluded.last_started_ts,"
                " last_run_id = excluded.last_run_id",
                (target, run_id, now, now + lease_s, now, run_id),
            )
            return Claim(decision, run_id, step)

    def _write_capped_times(
        self, connection: sqlite3.Connection, target: str, state: TargetState
    ) -> None:
        connection.execute(
            "UPDATE targets SET last_started_ts = ?, last_finished_ts = ?, last_success_ts = ?,"
            " inflight_started_ts = ?, lease_expires_ts = ? WHERE target = ?",
            (
                state.last_started_ts,
                state.last_finished_ts,
                state.last_success_ts,
                state.inflight_started_ts,
                state.lease_expires_ts,
                target,
            ),
        )

    def _give_up_lost_run(
        self, connection: sqlite3.Connection, target: str, run_id: int, now: float
    ) -> None:
        error = "the worker running this prune died or hung; its lease expired"
        connection.execute(
            "UPDATE runs SET result = ?, finished_ts = ?, error = ?, error_kind = 'lost'"
            " WHERE id = ? AND result = ?",
            (Result.LOST, now, error, run_id, Result.RUNNING),
        )
        connection.execute(
            "UPDATE targets SET last_result = ?, last_finished_ts = ?, last_error = ?,"
            " last_error_kind = 'lost', inflight_run_id = NULL, inflight_started_ts = NULL,"
            " lease_expires_ts = NULL WHERE target = ? AND inflight_run_id = ?",
            (Result.LOST, now, error, target, run_id),
        )

    def finish(self, target: str, run_id: int, outcome: RunOutcome, now: float) -> bool:
        """Record how run `run_id` ended. Returns False when a newer run owns the target:
        then only the run's own history row is written, never the target's state."""
        result = Result.OK if outcome.ok else Result.FAILED
        with self._transaction() as connection:
            connection.execute(
                "UPDATE runs SET finished_ts = ?, result = ?, rc = ?, reclaimed = ?,"
                " reclaimed_bytes = ?, error = ?, error_kind = ?, duration_s = ?,"
                " stdout_tail = ?, stderr_tail = ? WHERE id = ?",
                (
                    now,
                    result,
                    outcome.rc,
                    outcome.reclaimed,
                    outcome.reclaimed_bytes,
                    outcome.error,
                    outcome.error_kind,
                    outcome.duration_s,
                    outcome.stdout_tail,
                    outcome.stderr_tail,
                    run_id,
                ),
            )
            owned = connection.execute(
                "UPDATE targets SET last_finished_ts = ?, last_result = ?, last_reclaimed = ?,"
                " last_reclaimed_bytes = ?, last_error = ?, last_error_kind = ?,"
                " last_success_ts = CASE WHEN ? THEN ? ELSE last_success_ts END,"
                " inflight_run_id = NULL, inflight_started_ts = NULL, lease_expires_ts = NULL"
                " WHERE target = ? AND inflight_run_id = ?",
                (
                    now,
                    result,
                    outcome.reclaimed,
                    outcome.reclaimed_bytes,
                    outcome.error,
                    outcome.error_kind,
                    outcome.ok,
                    now,
                    target,
                    run_id,
                ),
            ).rowcount
            connection.execute(
                "DELETE FROM runs WHERE target = ? AND result != ? AND id NOT IN ("
                " SELECT id FROM runs WHERE target = ? ORDER BY id DESC LIMIT ?)",
                (target, Result.RUNNING, target, HISTORY_LIMIT),
            )
            return owned == 1

    def remember_delivery(self, delivery_id: str, now: float, keep_s: float) -> bool:
        """Record a signed delivery's id; False when it was seen within `keep_s` (a replay).

        Each step is an index lookup (time, rowid), never a scan, as it runs under the
        write lock on every signed request."""
        with self._transaction() as connection:
            connection.execute(EXPIRE_DELIVERIES, (now - keep_s,))
            connection.execute(CAP_DELIVERIES, (DELIVERIES_LIMIT - 1,))
            return (
                connection.execute(
                    "INSERT OR IGNORE INTO deliveries (id, seen_ts) VALUES (?, ?)",
                    (delivery_id, now),
                ).rowcount
                == 1
            )

    def forget_delivery(self, delivery_id: str) -> None:
        """Undo `remember_delivery`: the request failed, so its retry must be decided afresh."""
        with self._transaction() as connection:
            connection.execute("DELETE FROM deliveries WHERE id = ?", (delivery_id,))

    def adopt_legacy_state(self, name: str, preferred_key: str | None = None) -> str | None:
        """Carry a row keyed the old way (`user@host:port`) over to the target `name`.

        Before targets had names, a row was keyed by its SSH endpoint. On upgrade the
        endpoint's row (or, when the user or port changed too, the most recent such row)
        becomes the named target's, with its history, so the interval survives the
        upgrade instead of pruning at once. Returns the old key, or None.
        """
        with self._transaction() as connection:
            if self._row(connection, name) is not None:
                return None
            legacy = connection.execute(
                "SELECT target FROM targets WHERE target LIKE '%@%'"
                " ORDER BY target = ? DESC, last_started_ts DESC LIMIT 1",
                (preferred_key,),
            ).fetchone()
            if legacy is None:
                return None
            old = legacy["target"]
            connection.execute("UPDATE targets SET target = ? WHERE target = ?", (name, old))
            connection.execute("UPDATE runs SET target = ? WHERE target = ?", (name, old))
            return str(old)

    def target_row(self, target: str) -> dict[str, Any] | None:
        with self._connect() as connection:
            row = self._row(connection, target)
            return dict(row) if row else None

    def recent_runs(self, target: str, limit: int = 10) -> list[dict[str, Any]]:
        with self._connect() as connection:
            rows = connection.execute(
                "SELECT * FROM runs WHERE target = ? ORDER BY id DESC LIMIT ?", (target, limit)
            ).fetchall()
            return [dict(row) for row in rows]

    def run(self, run_id: int) -> dict[str, Any] | None:
        with self._connect() as connection:
            row = connection.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            return dict(row) if row else None
