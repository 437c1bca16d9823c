"""The state in PostgreSQL (psycopg 3): one database shared by any number of replicas.

Every write is one short transaction; a claim locks the target's row (`FOR UPDATE`),
compares it with the state the service decided on and records the run, so replicas
start at most one prune per target. No transaction or lock is held while a prune runs.
Nothing depends on session state (no prepared statements, no session advisory locks),
so the store works through PgBouncer in transaction mode. The schema is versioned and
migrated under a transaction-level advisory lock, so replicas starting at once migrate
it once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from webhook.core.decision import Result, TargetState
from webhook.core.outcome import ErrorKind, RunOutcome
from webhook.store import (
    DELIVERIES_LIMIT,
    HISTORY_LIMIT,
    LOST_ERROR,
    NewRun,
    RunRecord,
    StateConflict,
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

# any constant of our own: the key of the transaction-level lock that migrations take
MIGRATION_LOCK = 0x7072756E65  # "prune"
# how long a request waits for a connection: each thread has one, so a wait this long means
# the server is away, and a hook had better answer 503 soon (the sender retries)
POOL_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 3

_FIRST_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS targets (
        target TEXT PRIMARY KEY,
        last_run_id BIGINT,
        last_started_ts DOUBLE PRECISION,
        last_finished_ts DOUBLE PRECISION,
        last_result TEXT,
        last_reclaimed TEXT,
        last_reclaimed_bytes BIGINT,
        last_error TEXT,
        last_error_kind TEXT,
        last_success_ts DOUBLE PRECISION,
        inflight_run_id BIGINT,
        inflight_started_ts DOUBLE PRECISION,
        lease_expires_ts DOUBLE PRECISION
    )""",
    """CREATE TABLE IF NOT EXISTS runs (
        id BIGSERIAL PRIMARY KEY,
        target TEXT NOT NULL,
        trigger TEXT NOT NULL,
        command TEXT NOT NULL,
        started_ts DOUBLE PRECISION NOT NULL,
        finished_ts DOUBLE PRECISION,
        result TEXT NOT NULL,
        rc INTEGER,
        reclaimed TEXT,
        reclaimed_bytes BIGINT,
        error TEXT,
        error_kind TEXT,
        duration_s DOUBLE PRECISION,
        stdout_tail TEXT,
        stderr_tail TEXT,
        worker_pid INTEGER,
        request_id TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS runs_by_target ON runs (target, id)",
    """CREATE TABLE IF NOT EXISTS deliveries (
        id TEXT PRIMARY KEY,
        seen_ts DOUBLE PRECISION NOT NULL,
        settled BOOLEAN NOT NULL DEFAULT false,
        seq BIGSERIAL
    )""",
    "CREATE INDEX IF NOT EXISTS deliveries_by_time ON deliveries (seen_ts)",
    "CREATE INDEX IF NOT EXISTS deliveries_by_seq ON deliveries (seq)",
)

# disk-aware pruning: what each run measured and decided, its steps (JSON text, as SQLite
# keeps them); each target's last measurement
_DISK_COLUMNS = (
    """ALTER TABLE runs
        ADD COLUMN IF NOT EXISTS steps TEXT,
        ADD COLUMN IF NOT EXISTS notes TEXT,
        ADD COLUMN IF NOT EXISTS freed_bytes BIGINT,
        ADD COLUMN IF NOT EXISTS disk_size BIGINT,
        ADD COLUMN IF NOT EXISTS disk_free_before BIGINT,
        ADD COLUMN IF NOT EXISTS disk_free_after BIGINT,
        ADD COLUMN IF NOT EXISTS cache_before BIGINT,
        ADD COLUMN IF NOT EXISTS cache_after BIGINT,
        ADD COLUMN IF NOT EXISTS goal_met BOOLEAN,
        ADD COLUMN IF NOT EXISTS free_short_bytes BIGINT,
        ADD COLUMN IF NOT EXISTS cache_over_bytes BIGINT,
        ADD COLUMN IF NOT EXISTS keep_storage_bytes BIGINT,
        ADD COLUMN IF NOT EXISTS docker_version TEXT,
        ADD COLUMN IF NOT EXISTS buildx_version TEXT""",
    """ALTER TABLE targets
        ADD COLUMN IF NOT EXISTS last_disk_size BIGINT,
        ADD COLUMN IF NOT EXISTS last_disk_free BIGINT,
        ADD COLUMN IF NOT EXISTS last_cache BIGINT,
        ADD COLUMN IF NOT EXISTS last_measured_ts DOUBLE PRECISION,
        ADD COLUMN IF NOT EXISTS last_freed_bytes BIGINT,
        ADD COLUMN IF NOT EXISTS last_goal_met BOOLEAN,
        ADD COLUMN IF NOT EXISTS last_free_short_bytes BIGINT""",
)

# MIGRATIONS[n] takes a database from version n to n + 1; append, never edit one
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    _FIRST_SCHEMA,
    ("ALTER TABLE targets ADD COLUMN IF NOT EXISTS retry_at_ts DOUBLE PRECISION",),
    _DISK_COLUMNS,
)
SCHEMA_VERSION = len(MIGRATIONS)

SELECT_TARGETS = (
    "SELECT target, last_run_id, last_started_ts, last_finished_ts, last_result,"
    " last_reclaimed, last_reclaimed_bytes, last_error, last_error_kind, last_success_ts,"
    " inflight_run_id, inflight_started_ts, lease_expires_ts, retry_at_ts, last_disk_size,"
    " last_disk_free, last_cache, last_measured_ts, last_freed_bytes, last_goal_met,"
    " last_free_short_bytes FROM targets"
)
SELECT_TARGET = SELECT_TARGETS + " WHERE target = %s"
SELECT_RUNS = (
    "SELECT id, target, trigger, command, started_ts, finished_ts, result, rc, reclaimed,"
    " reclaimed_bytes, error, error_kind, duration_s, stdout_tail, stderr_tail, worker_pid,"
    " request_id, steps, notes, freed_bytes, disk_size, disk_free_before, disk_free_after,"
    " cache_before, cache_after, goal_met, free_short_bytes, cache_over_bytes,"
    " keep_storage_bytes, docker_version, buildx_version FROM runs"
)
SELECT_RECENT_RUNS = SELECT_RUNS + " WHERE target = %s ORDER BY id DESC LIMIT %s"
SELECT_RUN = SELECT_RUNS + " WHERE id = %s"


class PostgresStore:
    """A small pool of connections per process, each checked before use."""

    def __init__(self, url: str, max_connections: int = 4):
        self.url = url
        self._pool: ConnectionPool | None = None
        self._max = max(2, max_connections)
        self._pool_lock = threading.Lock()
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        # the last state read of each target: what the skip path answers from while the
        # database is unreachable (a claim still needs it, and then answers 503)
        self._last_known: dict[str, TargetState] = {}

    def __repr__(self) -> str:
        return "PostgresStore(<url>)"  # the URL may carry a password

    def _connections(self) -> ConnectionPool:
        # opened on first use, in the process that uses it: never across a fork
        with self._pool_lock:
            if self._pool is None:
                self._pool = ConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=self._max,
                    kwargs={
                        "autocommit": True,
                        "row_factory": dict_row,
                        # PgBouncer in transaction mode: no prepared statements
                        "prepare_threshold": None,
                        "connect_timeout": CONNECT_TIMEOUT_S,
                    },
                    check=ConnectionPool.check_connection,
                    timeout=POOL_TIMEOUT_S,
                    reconnect_timeout=0,  # never give up on a database that comes back
                    open=False,
                    name="prunehook",
                )
                self._pool.open(wait=False)
            return self._pool

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    @contextmanager
    def _statement(self) -> Iterator[psycopg.Connection[Any]]:
        """A checked connection of the pool, the schema current. It is in autocommit: one
        statement on it is a transaction of its own, which is all a read of one query needs
        (BEGIN and COMMIT would be two more round trips on the skip path)."""
        try:
            with self._connections().connection() as connection:
                if not self._schema_ready:
                    self._migrate(connection)
                yield connection
        except PoolTimeout as error:
            raise StoreUnavailable(f"no connection to PostgreSQL: {error}") from error
        except psycopg.OperationalError as error:
            raise StoreUnavailable(f"PostgreSQL: {error}") from error

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[Any]]:
        with self._statement() as connection, connection.transaction():
            yield connection

    def ensure_schema(self) -> None:
        with self._statement():
            pass

    def ping(self) -> None:
        with self._statement() as connection:
            connection.execute("SELECT 1").fetchone()

    def clock(self) -> float:
        """The database's time: what replicas share, whatever their own clocks say."""
        with self._statement() as connection:
            found = connection.execute(
                "SELECT extract(epoch FROM clock_timestamp()) AS now"
            ).fetchone()
            assert found is not None
            return float(found["now"])

    def _migrate(self, connection: psycopg.Connection[Any]) -> None:
        with self._schema_lock:
            if self._schema_ready:
                return
            with connection.transaction():
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                connection.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
                )
                row = connection.execute("SELECT max(version) AS v FROM schema_version")
                found = row.fetchone()
                version = int(found["v"]) if found and found["v"] is not None else 0
                if version > SCHEMA_VERSION:
                    raise StoreUnavailable(
                        f"the database has schema version {version}, newer than this"
                        f" prunehook's {SCHEMA_VERSION}: upgrade prunehook"
                    )
                for statements in MIGRATIONS[version:]:
                    for statement in statements:
                        connection.execute(statement)
                if version < SCHEMA_VERSION:  # no write at each start of a current schema
                    connection.execute("DELETE FROM schema_version")
                    connection.execute(
                        "INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION,)
                    )
            self._schema_ready = True

    def schema_version(self) -> int:
        with self._statement() as connection:
            found = connection.execute("SELECT max(version) AS v FROM schema_version").fetchone()
            return int(found["v"]) if found and found["v"] is not None else 0

    @staticmethod
    def _row(connection: psycopg.Connection[Any], target: str, lock: bool = False) -> Any:
        query = SELECT_TARGET + (" FOR UPDATE" if lock else "")
        return connection.execute(query, (target,)).fetchone()

    def read_state(self, target: str) -> TargetState:
        try:
            with self._statement() as connection:
                row = self._row(connection, target)
        except StoreUnavailable:
            known = self._last_known.get(target)
            if known is None:
                raise
            return known
        state = state_from(row)
        self._last_known[target] = state
        return state

    def _locked_unchanged(
        self, connection: psycopg.Connection[Any], target: str, expected: TargetState
    ) -> bool:
        # an empty row is made first, so that concurrent claims of a new target lock it too
        connection.execute(
            "INSERT INTO targets (target) VALUES (%s) ON CONFLICT (target) DO NOTHING", (target,)
        )
        row = self._row(connection, target, lock=True)
        return state_from(row) == expected

    def claim(
        self, target: str, expected: TargetState, run: NewRun, now: float, lease_s: float
    ) -> int | None:
        with self._transaction() as connection:
            if not self._locked_unchanged(connection, target, expected):
                return None
            if expected.inflight_run_id is not None:
                self._give_up_lost_run(connection, target, expected.inflight_run_id, now)
            found = connection.execute(
                "INSERT INTO runs (target, trigger, command, started_ts, result, worker_pid,"
                " request_id) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (
                    target,
                    run.trigger,
                    run.command,
                    now,
                    Result.RUNNING.value,
                    run.worker_pid,
                    run.request_id,
                ),
            ).fetchone()
            assert found is not None
            run_id = int(found["id"])
            connection.execute(
                "UPDATE targets SET inflight_run_id = %s, inflight_started_ts = %s,"
                " lease_expires_ts = %s, last_started_ts = %s, last_run_id = %s"
                " WHERE target = %s",
                (run_id, now, now + lease_s, now, run_id, target),
            )
            return run_id

    def correct_times(self, target: str, expected: TargetState, corrected: TargetState) -> bool:
        with self._transaction() as connection:
            if not self._locked_unchanged(connection, target, expected):
                return False
            connection.execute(
                "UPDATE targets SET last_started_ts = %s, last_finished_ts = %s,"
                " last_success_ts = %s, inflight_started_ts = %s, lease_expires_ts = %s,"
                " retry_at_ts = %s WHERE target = %s",
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
            renewed = connection.execute(
                "UPDATE targets SET lease_expires_ts = %s WHERE target = %s"
                " AND inflight_run_id = %s",
                (expires_ts, target, run_id),
            )
            return renewed.rowcount == 1

    @staticmethod
    def _give_up_lost_run(
        connection: psycopg.Connection[Any], target: str, run_id: int, now: float
    ) -> None:
        connection.execute(
            "UPDATE runs SET result = %s, finished_ts = %s, error = %s, error_kind = %s"
            " WHERE id = %s AND result = %s",
            (Result.LOST.value, now, LOST_ERROR, ErrorKind.LOST.value, run_id, "running"),
        )
        connection.execute(
            "UPDATE targets SET last_result = %s, last_finished_ts = %s, last_error = %s,"
            " last_error_kind = %s, inflight_run_id = NULL, inflight_started_ts = NULL,"
            " lease_expires_ts = NULL, retry_at_ts = NULL"
            " WHERE target = %s AND inflight_run_id = %s",
            (Result.LOST.value, now, LOST_ERROR, ErrorKind.LOST.value, target, run_id),
        )

    def finish(self, target: str, run_id: int, outcome: RunOutcome, now: float) -> bool:
        result = (Result.OK if outcome.ok else Result.FAILED).value
        kind = outcome.error_kind.value if outcome.error_kind else None
        with self._transaction() as connection:
            connection.execute(
                "UPDATE runs SET finished_ts = %s, result = %s, rc = %s, reclaimed = %s,"
                " reclaimed_bytes = %s, error = %s, error_kind = %s, duration_s = %s,"
                " stdout_tail = %s, stderr_tail = %s, steps = %s, notes = %s,"
                " freed_bytes = %s, disk_size = %s, disk_free_before = %s, disk_free_after = %s,"
                " cache_before = %s, cache_after = %s, goal_met = %s, free_short_bytes = %s,"
                " cache_over_bytes = %s, keep_storage_bytes = %s, docker_version = %s,"
                " buildx_version = %s WHERE id = %s",
                (
                    now,
                    result,
                    outcome.rc,
                    outcome.reclaimed,
                    outcome.reclaimed_bytes,
                    outcome.error,
                    kind,
                    outcome.duration_s,
                    _text(outcome.stdout_tail),
                    _text(outcome.stderr_tail),
                    _text(encode_steps(outcome.steps)),
                    _text(encode_notes(outcome.notes)),
                    *disk_values(outcome),
                    run_id,
                ),
            )
            size, free, cache = last_measurement(outcome)
            measured = any(value is not None for value in (size, free, cache))
            owned = connection.execute(
                "UPDATE targets SET last_finished_ts = %s, last_result = %s,"
                " last_reclaimed = %s, last_reclaimed_bytes = %s, last_error = %s,"
                " last_error_kind = %s,"
                " last_success_ts = CASE WHEN %s THEN %s ELSE last_success_ts END,"
                " retry_at_ts = %s,"
                " inflight_run_id = NULL, inflight_started_ts = NULL, lease_expires_ts = NULL,"
                " last_disk_size = coalesce(%s, last_disk_size),"
                " last_disk_free = coalesce(%s, last_disk_free),"
                " last_cache = coalesce(%s, last_cache),"
                " last_measured_ts = CASE WHEN %s THEN %s ELSE last_measured_ts END,"
                " last_freed_bytes = %s, last_goal_met = %s, last_free_short_bytes = %s"
                " WHERE target = %s AND inflight_run_id = %s",
                (
                    now,
                    result,
                    outcome.reclaimed,
                    outcome.reclaimed_bytes,
                    outcome.error,
                    kind,
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
                "DELETE FROM runs WHERE target = %s AND result <> 'running' AND id NOT IN ("
                " SELECT id FROM runs WHERE target = %s ORDER BY id DESC LIMIT %s)",
                (target, target, HISTORY_LIMIT),
            )
            return owned == 1

    def remember_delivery(
        self, delivery_id: str, now: float, keep_s: float, pending_s: float
    ) -> bool:
        with self._transaction() as connection:
            connection.execute("DELETE FROM deliveries WHERE seen_ts < %s", (now - keep_s,))
            connection.execute(
                "DELETE FROM deliveries WHERE seq <= (SELECT max(seq) FROM deliveries) - %s",
                (DELIVERIES_LIMIT - 1,),
            )
            taken = connection.execute(
                "INSERT INTO deliveries (id, seen_ts, settled) VALUES (%s, %s, false)"
                " ON CONFLICT (id) DO UPDATE SET seen_ts = excluded.seen_ts"
                " WHERE deliveries.settled = false AND deliveries.seen_ts < %s",
                (delivery_id, now, now - pending_s),
            )
            return taken.rowcount == 1

    def settle_delivery(self, delivery_id: str) -> None:
        with self._transaction() as connection:
            connection.execute("UPDATE deliveries SET settled = true WHERE id = %s", (delivery_id,))

    def forget_delivery(self, delivery_id: str) -> None:
        with self._transaction() as connection:
            connection.execute(
                "DELETE FROM deliveries WHERE id = %s AND settled = false", (delivery_id,)
            )

    def adopt_legacy_state(self, name: str, preferred_key: str | None = None) -> str | None:
        """Rows keyed by an SSH endpoint predate PostgreSQL support: nothing to adopt."""
        return None

    def target_record(self, target: str) -> TargetRecord | None:
        with self._statement() as connection:
            row = self._row(connection, target)
            return target_record_from(row) if row else None

    def target_records(self) -> dict[str, TargetRecord]:
        with self._statement() as connection:
            rows = connection.execute(SELECT_TARGETS).fetchall()
            return {row["target"]: target_record_from(row) for row in rows}

    def recent_runs(self, target: str, limit: int = 10) -> list[RunRecord]:
        with self._statement() as connection:
            rows = connection.execute(SELECT_RECENT_RUNS, (target, limit)).fetchall()
            return [run_record_from(row) for row in rows]

    def run(self, run_id: int) -> RunRecord | None:
        with self._statement() as connection:
            row = connection.execute(SELECT_RUN, (run_id,)).fetchone()
            return run_record_from(row) if row else None

    def load(self, dump: StateDump) -> None:
        """Add a dumped state in one transaction: rows, history (new run ids, the rows'
        references mapped to them) and delivery ids. Refuses (StateConflict, nothing
        written) when a target already has a row with state here."""
        with self._transaction() as connection:
            names = [record.target for record in dump.targets]
            taken = connection.execute(
                "SELECT target FROM targets WHERE target = ANY(%s) AND last_run_id IS NOT NULL"
                " FOR UPDATE",
                (names,),
            ).fetchall()
            if taken:
                raise StateConflict(sorted(row["target"] for row in taken))
            new_ids: dict[int, int] = {}
            for run in dump.runs:
                found = connection.execute(
                    "INSERT INTO runs (target, trigger, command, started_ts, finished_ts, result,"
                    " rc, reclaimed, reclaimed_bytes, error, error_kind, duration_s, stdout_tail,"
                    " stderr_tail, worker_pid, request_id, steps, notes, freed_bytes, disk_size,"
                    " disk_free_before, disk_free_after, cache_before, cache_after, goal_met,"
                    " free_short_bytes, cache_over_bytes, keep_storage_bytes, docker_version,"
                    " buildx_version) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
                    " %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " RETURNING id",
                    (
                        run.target, run.trigger, run.command, run.started_ts, run.finished_ts,
                        run.result.value, run.rc, run.reclaimed, run.reclaimed_bytes, run.error,
                        run.error_kind.value if run.error_kind else None, run.duration_s,
                        _text(run.stdout_tail or ""), _text(run.stderr_tail or ""),
                        run.worker_pid, run.request_id, _text(encode_steps(run.steps)),
                        _text(encode_notes(run.notes)), *disk_values(run),
                    ),
                ).fetchone()  # fmt: skip
                assert found is not None
                new_ids[run.id] = int(found["id"])
            for record in dump.targets:

                def mapped(run_id: int | None) -> int | None:
                    return None if run_id is None else new_ids.get(run_id)

                connection.execute(
                    "INSERT INTO targets (target, last_run_id, last_started_ts, last_finished_ts,"
                    " last_result, last_reclaimed, last_reclaimed_bytes, last_error,"
                    " last_error_kind, last_success_ts, inflight_run_id, inflight_started_ts,"
                    " lease_expires_ts, retry_at_ts, last_disk_size, last_disk_free, last_cache,"
                    " last_measured_ts, last_freed_bytes, last_goal_met, last_free_short_bytes)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
                    " %s, %s, %s, %s, %s) ON CONFLICT (target) DO UPDATE SET"
                    " last_run_id = excluded.last_run_id,"
                    " last_started_ts = excluded.last_started_ts,"
                    " last_finished_ts = excluded.last_finished_ts,"
                    " last_result = excluded.last_result,"
                    " last_reclaimed = excluded.last_reclaimed,"
                    " last_reclaimed_bytes = excluded.last_reclaimed_bytes,"
                    " last_error = excluded.last_error,"
                    " last_error_kind = excluded.last_error_kind,"
                    " last_success_ts = excluded.last_success_ts,"
                    " inflight_run_id = excluded.inflight_run_id,"
                    " inflight_started_ts = excluded.inflight_started_ts,"
                    " lease_expires_ts = excluded.lease_expires_ts,"
                    " retry_at_ts = excluded.retry_at_ts,"
                    " last_disk_size = excluded.last_disk_size,"
                    " last_disk_free = excluded.last_disk_free,"
                    " last_cache = excluded.last_cache,"
                    " last_measured_ts = excluded.last_measured_ts,"
                    " last_freed_bytes = excluded.last_freed_bytes,"
                    " last_goal_met = excluded.last_goal_met,"
                    " last_free_short_bytes = excluded.last_free_short_bytes",
                    (
                        record.target, mapped(record.last_run_id), record.last_started_ts,
                        record.last_finished_ts,
                        record.last_result.value if record.last_result else None,
                        record.last_reclaimed, record.last_reclaimed_bytes, record.last_error,
                        record.last_error_kind.value if record.last_error_kind else None,
                        record.last_success_ts, mapped(record.inflight_run_id),
                        record.inflight_started_ts, record.lease_expires_ts, record.retry_at_ts,
                        record.last_disk_size, record.last_disk_free, record.last_cache,
                        record.last_measured_ts, record.last_freed_bytes, record.last_goal_met,
                        record.last_free_short_bytes,
                    ),
                )  # fmt: skip
            for delivery in dump.deliveries:
                connection.execute(
                    "INSERT INTO deliveries (id, seen_ts, settled) VALUES (%s, %s, %s)"
                    " ON CONFLICT (id) DO NOTHING",
                    (delivery.id, delivery.seen_ts, delivery.settled),
                )


def _text(value: str) -> str:
    # PostgreSQL's text cannot hold NUL; a host's output may
    return value.replace("\x00", "\ufffd")


class DatabaseClock:
    """The database's time, read without a round trip per call: the offset between the
    local clock and the database's is measured now and then (and after the local clock
    stepped back), so every replica decides on the same clock, whatever its own says."""

    def __init__(
        self,
        store: PostgresStore,
        local: Callable[[], float] = time.time,
        refresh_s: float = 60.0,
    ):
        self.store = store
        self.local = local
        self.refresh_s = refresh_s
        self.offset_s = 0.0
        self._measured_at: float | None = None

    def _measure(self) -> None:
        before = self.local()
        database = self.store.clock()
        after = self.local()
        self.offset_s = database - (before + after) / 2
        self._measured_at = after

    def __call__(self) -> float:
        now = self.local()
        measured = self._measured_at
        if measured is None or not (measured <= now < measured + self.refresh_s):
            try:
                self._measure()
                now = self.local()
            except StoreUnavailable:
                pass  # keep the last offset: the claim that follows answers 503 anyway
        return now + self.offset_s
