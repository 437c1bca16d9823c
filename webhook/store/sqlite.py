"""The state of each target and its recent runs, in one SQLite file (the embedded default).

Every write is one short `BEGIN IMMEDIATE` transaction, so concurrent requests
in any number of gunicorn workers serialize on it; a claim is a
compare-and-set against the state the service decided on. A plain read
answers the common case (a trigger inside the interval) without the write
lock, and is cached per thread until `PRAGMA data_version` says another
connection committed.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from webhook.core.decision import Result, TargetState
from webhook.core.outcome import ErrorKind, RunOutcome
from webhook.store import (
    DELIVERIES_LIMIT,
    HISTORY_LIMIT,
    LOST_ERROR,
    DeliveryRecord,
    NewRun,
    RunRecord,
    StateDump,
    StoreUnavailable,
    TargetRecord,
    disk_values,
    encode_notes,
    encode_steps,
    last_measurement,
    run_record_from,
    state_from,
    target_record_from,
)

# rowids grow with each insert, so the oldest ids go first
EXPIRE_DELIVERIES = "DELETE FROM deliveries WHERE seen_ts < ?"
CAP_DELIVERIES = "DELETE FROM deliveries WHERE rowid <= (SELECT max(rowid) FROM deliveries) - ?"
BUSY_TIMEOUT_MS = 5000

_FIRST_SCHEMA = """
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
    stderr_tail TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_target ON runs (target, id);
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,
    seen_ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_by_time ON deliveries (seen_ts);
"""


def _add_columns(table: str, columns: Sequence[tuple[str, str]]) -> Callable[..., None]:
    def migrate(connection: sqlite3.Connection) -> None:
        present = {row["name"] for row in connection.execute(f"PRAGMA table_info({table})")}
        for column, kind in columns:
            if column not in present:
                connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    return migrate


def _first_schema(connection: sqlite3.Connection) -> None:
    # files from before versioning (user_version 0) may hold any earlier shape of it
    for statement in _FIRST_SCHEMA.split(";"):
        if statement.strip():
            connection.execute(statement)


_disk_columns = (
    _add_columns(
        "runs",
        (
            ("steps", "TEXT"),
            ("notes", "TEXT"),
            ("freed_bytes", "INTEGER"),
            ("disk_size", "INTEGER"),
            ("disk_free_before", "INTEGER"),
            ("disk_free_after", "INTEGER"),
            ("cache_before", "INTEGER"),
            ("cache_after", "INTEGER"),
            ("goal_met", "INTEGER"),
            ("free_short_bytes", "INTEGER"),
            ("cache_over_bytes", "INTEGER"),
            ("keep_storage_bytes", "INTEGER"),
            ("docker_version", "TEXT"),
            ("buildx_version", "TEXT"),
        ),
    ),
    _add_columns(
        "targets",
        (
            ("last_disk_size", "INTEGER"),
            ("last_disk_free", "INTEGER"),
            ("last_cache", "INTEGER"),
            ("last_measured_ts", "REAL"),
            ("last_freed_bytes", "INTEGER"),
            ("last_goal_met", "INTEGER"),
            ("last_free_short_bytes", "INTEGER"),
        ),
    ),
)


def _disk_aware(connection: sqlite3.Connection) -> None:
    for migrate in _disk_columns:
        migrate(connection)


# MIGRATIONS[n] takes a file from user_version n to n + 1; append, never edit one
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _first_schema,
    _add_columns("runs", (("worker_pid", "INTEGER"), ("request_id", "TEXT"))),
    # ids remembered before this were answered: settled
    _add_columns("deliveries", (("settled", "INTEGER NOT NULL DEFAULT 1"),)),
    _add_columns("targets", (("retry_at_ts", "REAL"),)),
    # disk-aware pruning: what each run measured and decided, its steps; each target's last
    # measurement
    _disk_aware,
)
SCHEMA_VERSION = len(MIGRATIONS)

SELECT_TARGETS = (
    "SELECT target, last_run_id, last_started_ts, last_finished_ts, last_result,"
    " last_reclaimed, last_reclaimed_bytes, last_error, last_error_kind, last_success_ts,"
    " inflight_run_id, inflight_started_ts, lease_expires_ts, retry_at_ts, last_disk_size,"
    " last_disk_free, last_cache, last_measured_ts, last_freed_bytes, last_goal_met,"
    " last_free_short_bytes FROM targets"
)
SELECT_TARGET = SELECT_TARGETS + " WHERE target = ?"
SELECT_RUNS = (
    "SELECT id, target, trigger, command, started_ts, finished_ts, result, rc, reclaimed,"
    " reclaimed_bytes, error, error_kind, duration_s, stdout_tail, stderr_tail, worker_pid,"
    " request_id, steps, notes, freed_bytes, disk_size, disk_free_before, disk_free_after,"
    " cache_before, cache_after, goal_met, free_short_bytes, cache_over_bytes,"
    " keep_storage_bytes, docker_version, buildx_version FROM runs"
)
SELECT_RECENT_RUNS = SELECT_RUNS + " WHERE target = ? ORDER BY id DESC LIMIT ?"
SELECT_RUN = SELECT_RUNS + " WHERE id = ?"


class SQLiteStore:
    """One SQLite connection per thread, kept open: opening one per call (connect, pragma,
    reading the schema) cost more than the skip path's whole query."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._local = threading.local()
        # False until the schema is current: made on first use and retried after a failure
        # (a volume that was full at start), so no restart is needed once it is usable
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

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
        self._local.probe = None
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
            self._local.probe = None
            self._forget_states()
        try:
            if not self._schema_ready:
                self._migrate(connection)
                self._forget_states()
            yield connection
        except sqlite3.DatabaseError as error:
            self._failed(error)

    def _failed(self, error: sqlite3.DatabaseError) -> NoReturn:
        # locked, read-only, unreadable or not a database: unavailable, so callers retry;
        # a constraint or SQL error is a bug and stays one
        if type(error) not in (sqlite3.OperationalError, sqlite3.DatabaseError):
            raise error
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

    def ensure_schema(self) -> None:
        """Create or migrate the schema now (at start) rather than on first use."""
        with self._connect():
            pass

    def ping(self) -> None:
        with self._connect() as connection:
            connection.execute("SELECT 1").fetchone()

    def _migrate(self, connection: sqlite3.Connection) -> None:
        """Bring the file to SCHEMA_VERSION. Each step runs in the write transaction that
        also reads the version, so workers starting at once migrate it exactly once."""
        with self._schema_lock:
            if self._schema_ready:
                return
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("BEGIN IMMEDIATE")
            try:
                version = connection.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise StoreUnavailable(
                        f"{self.path} has schema version {version}, newer than this"
                        f" prunehook's {SCHEMA_VERSION}: upgrade prunehook"
                    )
                for migrate in MIGRATIONS[version:]:
                    migrate(connection)
                # written only when it moves: a write here would be a commit that empties
                # every other worker's kept states (data_version) at each start
                if version < SCHEMA_VERSION:
                    # PRAGMA takes no parameters; the value is our own integer
                    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
            self._schema_ready = True

    def schema_version(self) -> int:
        with self._connect() as connection:
            return int(connection.execute("PRAGMA user_version").fetchone()[0])

    def _row(self, connection: sqlite3.Connection, target: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = connection.execute(SELECT_TARGET, (target,)).fetchone()
        return row

    def read_state(self, target: str) -> TargetState:
        """The state as last read by this thread while no connection has committed since
        (`PRAGMA data_version` says so for other connections, `_transaction` for this one):
        an alert storm's skips then cost one pragma each instead of a query and a row."""
        probe: sqlite3.Cursor | None = getattr(self._local, "probe", None)
        if probe is None or not self._schema_ready:
            with self._connect() as connection:
                # the pragma's own cursor, kept with the connection and giving plain tuples:
                # a skip makes neither a cursor nor a Row
                probe = self._local.probe = connection.cursor()
                probe.row_factory = None
                return self._state_since(probe, target)
        try:
            return self._state_since(probe, target)
        except sqlite3.DatabaseError as error:
            self._failed(error)

    def _state_since(self, probe: sqlite3.Cursor, target: str) -> TargetState:
        local = self._local
        version = probe.execute("PRAGMA data_version").fetchone()[0]
        if version != local.data_version:
            local.states = {}
            local.data_version = version
        state: TargetState | None = local.states.get(target)
        if state is None:
            row = self._row(probe.connection, target)
            state = state_from(row)
            local.states[target] = state
        return state

    @staticmethod
    def _unchanged(row: sqlite3.Row | None, expected: TargetState) -> bool:
        """Every write to a target changes its last run or its run in flight (the times
        capped after a clock step aside, which are compared too)."""
        current = state_from(row)
        return current == expected

    def claim(
        self, target: str, expected: TargetState, run: NewRun, now: float, lease_s: float
    ) -> int | None:
        with self._transaction() as connection:
            if not self._unchanged(self._row(connection, target), expected):
                return None
            if expected.inflight_run_id is not None:
                self._give_up_lost_run(connection, target, expected.inflight_run_id, now)
            run_id = connection.execute(
                "INSERT INTO runs (target, trigger, command, started_ts, result, worker_pid,"
                " request_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    target,
                    run.trigger,
                    run.command,
                    now,
                    Result.RUNNING,
                    run.worker_pid,
                    run.request_id,
                ),
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
            return run_id

    def correct_times(self, target: str, expected: TargetState, corrected: TargetState) -> bool:
        with self._transaction() as connection:
            if not self._unchanged(self._row(connection, target), expected):
                return False
            connection.execute(
                "UPDATE targets SET last_started_ts = ?, last_finished_ts = ?,"
                " last_success_ts = ?, inflight_started_ts = ?, lease_expires_ts = ?,"
                " retry_at_ts = ? WHERE target = ?",
                (
                    corrected.last_started_ts,
                    corrected.last_finished_ts,
                    corrected.last_success_ts,
                    corrected.inflight_started_ts,
                    corrected.lease_expires_ts,
                    corrected.retry_at_ts,
                    target,
                ),
            )
            return True

    def renew_lease(self, target: str, run_id: int, expires_ts: float) -> bool:
        with self._transaction() as connection:
            return (
                connection.execute(
                    "UPDATE targets SET lease_expires_ts = ? WHERE target = ?"
                    " AND inflight_run_id = ?",
                    (expires_ts, target, run_id),
                ).rowcount
                == 1
            )

    def _give_up_lost_run(
        self, connection: sqlite3.Connection, target: str, run_id: int, now: float
    ) -> None:
        connection.execute(
            "UPDATE runs SET result = ?, finished_ts = ?, error = ?, error_kind = ?"
            " WHERE id = ? AND result = ?",
            (Result.LOST, now, LOST_ERROR, ErrorKind.LOST, run_id, Result.RUNNING),
        )
        connection.execute(
            "UPDATE targets SET last_result = ?, last_finished_ts = ?, last_error = ?,"
            " last_error_kind = ?, inflight_run_id = NULL, inflight_started_ts = NULL,"
            " lease_expires_ts = NULL, retry_at_ts = NULL"
            " WHERE target = ? AND inflight_run_id = ?",
            (Result.LOST, now, LOST_ERROR, ErrorKind.LOST, target, run_id),
        )

    def finish(self, target: str, run_id: int, outcome: RunOutcome, now: float) -> bool:
        """Record how run `run_id` ended. Returns False when a newer run owns the target:
        then only the run's own history row is written, never the target's state."""
        result = Result.OK if outcome.ok else Result.FAILED
        with self._transaction() as connection:
            connection.execute(
                "UPDATE runs SET finished_ts = ?, result = ?, rc = ?, reclaimed = ?,"
                " reclaimed_bytes = ?, error = ?, error_kind = ?, duration_s = ?,"
                " stdout_tail = ?, stderr_tail = ?, steps = ?, notes = ?,"
                " freed_bytes = ?, disk_size = ?, disk_free_before = ?, disk_free_after = ?,"
                " cache_before = ?, cache_after = ?, goal_met = ?, free_short_bytes = ?,"
                " cache_over_bytes = ?, keep_storage_bytes = ?, docker_version = ?,"
                " buildx_version = ? WHERE id = ?",
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
                    encode_steps(outcome.steps),
                    encode_notes(outcome.notes),
                    *disk_values(outcome),
                    run_id,
                ),
            )
            size, free, cache = last_measurement(outcome)
            measured = any(value is not None for value in (size, free, cache))
            owned = connection.execute(
                "UPDATE targets SET last_finished_ts = ?, last_result = ?, last_reclaimed = ?,"
                " last_reclaimed_bytes = ?, last_error = ?, last_error_kind = ?,"
                " last_success_ts = CASE WHEN ? THEN ? ELSE last_success_ts END,"
                " retry_at_ts = ?,"
                " inflight_run_id = NULL, inflight_started_ts = NULL, lease_expires_ts = NULL,"
                " last_disk_size = coalesce(?, last_disk_size),"
                " last_disk_free = coalesce(?, last_disk_free),"
                " last_cache = coalesce(?, last_cache),"
                " last_measured_ts = CASE WHEN ? THEN ? ELSE last_measured_ts END,"
                " last_freed_bytes = ?, last_goal_met = ?, last_free_short_bytes = ?"
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
                    None if outcome.retry_after_s is None else now + outcome.retry_after_s,
                    size,
                    free,
                    cache,
                    measured,
                    now,
                    outcome.freed_bytes,
                    outcome.goal_met,
                    outcome.free_short_bytes,
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

    def remember_delivery(
        self, delivery_id: str, now: float, keep_s: float, pending_s: float
    ) -> bool:
        """Each step is an index lookup (time, rowid), never a scan, as it runs under the
        write lock on every signed request."""
        with self._transaction() as connection:
            connection.execute(EXPIRE_DELIVERIES, (now - keep_s,))
            connection.execute(CAP_DELIVERIES, (DELIVERIES_LIMIT - 1,))
            return (
                connection.execute(
                    "INSERT INTO deliveries (id, seen_ts, settled) VALUES (?, ?, 0)"
                    " ON CONFLICT (id) DO UPDATE SET seen_ts = excluded.seen_ts"
                    " WHERE deliveries.settled = 0 AND deliveries.seen_ts < ?",
                    (delivery_id, now, now - pending_s),
                ).rowcount
                == 1
            )

    def settle_delivery(self, delivery_id: str) -> None:
        with self._transaction() as connection:
            connection.execute("UPDATE deliveries SET settled = 1 WHERE id = ?", (delivery_id,))

    def forget_delivery(self, delivery_id: str) -> None:
        with self._transaction() as connection:
            connection.execute(
                "DELETE FROM deliveries WHERE id = ? AND settled = 0", (delivery_id,)
            )

    def adopt_legacy_state(self, name: str, preferred_key: str | None = None) -> str | None:
        """Before targets had names, a row was keyed by its SSH endpoint. On upgrade the
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

    def target_record(self, target: str) -> TargetRecord | None:
        with self._connect() as connection:
            row = self._row(connection, target)
            return target_record_from(row) if row else None

    def target_records(self) -> dict[str, TargetRecord]:
        """Every target's row at once: a fleet's /status and /metrics read them together."""
        with self._connect() as connection:
            rows = connection.execute(SELECT_TARGETS).fetchall()
            return {row["target"]: target_record_from(row) for row in rows}

    def recent_runs(self, target: str, limit: int = 10) -> list[RunRecord]:
        with self._connect() as connection:
            rows = connection.execute(SELECT_RECENT_RUNS, (target, limit)).fetchall()
            return [run_record_from(row) for row in rows]

    def run(self, run_id: int) -> RunRecord | None:
        with self._connect() as connection:
            row = connection.execute(SELECT_RUN, (run_id,)).fetchone()
            return run_record_from(row) if row else None

    def dump(self) -> StateDump:
        """Every target's row, the whole run history and the delivery ids, oldest first."""
        with self._connect() as connection:
            targets = tuple(target_record_from(row) for row in connection.execute(SELECT_TARGETS))
            runs = tuple(
                run_record_from(row) for row in connection.execute(SELECT_RUNS + " ORDER BY id")
            )
            deliveries = tuple(
                DeliveryRecord(row["id"], row["seen_ts"], bool(row["settled"]))
                for row in connection.execute(
                    "SELECT id, seen_ts, settled FROM deliveries ORDER BY rowid"
                )
            )
            return StateDump(targets, runs, deliveries)
