"""What only the PostgreSQL backend does: versioned migrations under an advisory lock,
several replicas starting at once, no session state (PgBouncer's transaction mode)."""

from __future__ import annotations

import threading
import time

import psycopg

from webhook.store import NewRun, StoreUnavailable
from webhook.store.postgres import POOL_TIMEOUT_S, SCHEMA_VERSION, DatabaseClock, PostgresStore

# the schema the first release with PostgreSQL made (version 1)
FIRST_SCHEMA = (
    """CREATE TABLE targets (
        target TEXT PRIMARY KEY, last_run_id BIGINT, last_started_ts DOUBLE PRECISION,
        last_finished_ts DOUBLE PRECISION, last_result TEXT, last_reclaimed TEXT,
        last_reclaimed_bytes BIGINT, last_error TEXT, last_error_kind TEXT,
        last_success_ts DOUBLE PRECISION, inflight_run_id BIGINT,
        inflight_started_ts DOUBLE PRECISION, lease_expires_ts DOUBLE PRECISION)""",
    """CREATE TABLE runs (
        id BIGSERIAL PRIMARY KEY, target TEXT NOT NULL, trigger TEXT NOT NULL,
        command TEXT NOT NULL, started_ts DOUBLE PRECISION NOT NULL,
        finished_ts DOUBLE PRECISION, result TEXT NOT NULL, rc INTEGER, reclaimed TEXT,
        reclaimed_bytes BIGINT, error TEXT, error_kind TEXT, duration_s DOUBLE PRECISION,
        stdout_tail TEXT, stderr_tail TEXT, worker_pid INTEGER, request_id TEXT)""",
    "CREATE INDEX runs_by_target ON runs (target, id)",
    """CREATE TABLE deliveries (id TEXT PRIMARY KEY, seen_ts DOUBLE PRECISION NOT NULL,
        settled BOOLEAN NOT NULL DEFAULT false, seq BIGSERIAL)""",
    "CREATE INDEX deliveries_by_time ON deliveries (seen_ts)",
    "CREATE INDEX deliveries_by_seq ON deliveries (seq)",
)
# version 2 kept when a host refused for now
SECOND_SCHEMA = (*FIRST_SCHEMA, "ALTER TABLE targets ADD COLUMN retry_at_ts DOUBLE PRECISION")


def test_a_database_made_by_the_first_schema_is_migrated_to_the_current_one(postgres_database):
    with psycopg.connect(postgres_database, autocommit=True) as connection:
        for statement in FIRST_SCHEMA:
            connection.execute(statement)
        connection.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        connection.execute("INSERT INTO schema_version VALUES (1)")
        connection.execute(
            "INSERT INTO targets (target, last_run_id, last_started_ts, last_result)"
            " VALUES ('build-1', 7, 100.0, 'ok')"
        )
    store = PostgresStore(postgres_database)
    try:
        store.ensure_schema()
        assert store.schema_version() == SCHEMA_VERSION
        state = store.read_state("build-1")
        assert (state.last_run_id, state.last_started_ts, state.retry_at_ts) == (7, 100.0, None)
        assert state.interval_started_ts is None  # counts from its last start
        assert store.claim("build-1", state, NewRun("cron", "prune"), 200.0, 180) is not None
    finally:
        store.close()


def test_replicas_starting_at_once_migrate_the_database_once(postgres_database):
    stores = [PostgresStore(postgres_database) for _ in range(6)]
    barrier = threading.Barrier(len(stores))
    failures: list[BaseException] = []

    def start(store: PostgresStore) -> None:
        barrier.wait(30)
        try:
            store.ensure_schema()
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=start, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    try:
        assert failures == []
        assert {store.schema_version() for store in stores} == {SCHEMA_VERSION}
        with psycopg.connect(postgres_database) as connection:
            assert connection.execute("SELECT count(*) FROM schema_version").fetchone() == (1,)
    finally:
        for store in stores:
            store.close()


def test_no_connection_prepares_statements(postgres_database):
    """PgBouncer in transaction mode hands each transaction any server connection: a
    statement psycopg prepared on one would be missing on the next."""
    store = PostgresStore(postgres_database)
    try:
        for _ in range(10):  # psycopg prepares a query from its 5th run unless told not to
            store.read_state("build-1")
        with store._connections().connection() as connection:
            assert connection.prepare_threshold is None
            prepared = connection.execute("SELECT count(*) AS n FROM pg_prepared_statements")
            assert prepared.fetchone()["n"] == 0
    finally:
        store.close()


def test_a_database_from_before_disk_aware_pruning_keeps_its_runs(postgres_database):
    with psycopg.connect(postgres_database, autocommit=True) as connection:
        for statement in SECOND_SCHEMA:
            connection.execute(statement)
        connection.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        connection.execute("INSERT INTO schema_version VALUES (2)")
        connection.execute(
            "INSERT INTO runs (target, trigger, command, started_ts, result, reclaimed_bytes)"
            " VALUES ('build-1', 'cron', 'docker builder prune -f --filter until=24h', 1, 'ok',"
            " 5)"
        )
        connection.execute("INSERT INTO targets (target, last_run_id) VALUES ('build-1', 1)")
    store = PostgresStore(postgres_database)
    try:
        store.ensure_schema()
        assert store.schema_version() == SCHEMA_VERSION
        (run,) = store.recent_runs("build-1")
        assert (run.reclaimed_bytes, run.steps, run.freed_bytes, run.goal_met) == (
            5,
            (),
            None,
            None,
        )
        record = store.target_record("build-1")
        assert record is not None and record.last_disk_free is None
    finally:
        store.close()


# -- an outage ------------------------------------------------------------------------------


def pinged(store: PostgresStore) -> bool:
    try:
        store.ping()
    except StoreUnavailable:
        return False
    return True


def test_the_pool_recovers_after_postgresql_was_down_longer_than_its_reconnect_window(
    postgres_database, postgres, caplog
):
    store = PostgresStore(postgres_database)
    try:
        assert pinged(store)
        postgres.stop()
        try:
            # each request meanwhile waits for the pool, which tries and gives up
            deadline = time.monotonic() + 30
            while "failed after" not in caplog.text and time.monotonic() < deadline:
                assert not pinged(store)
            assert "reconnection attempt in pool 'prunehook' failed after" in caplog.text
            assert not pinged(store)
        finally:
            postgres.start()
        deadline = time.monotonic() + 15  # no restart: the next requests connect again
        while not pinged(store):
            assert time.monotonic() < deadline, "the pool did not come back"
    finally:
        store.close()


class DownStore:
    """A database away, then back (`ahead_s` ahead of the replica's clock `now`): how often
    the clock asked it."""

    def __init__(self, now: list[float]) -> None:
        self.now = now
        self.asked = 0
        self.ahead_s: float | None = None

    def clock(self) -> float:
        self.asked += 1
        if self.ahead_s is None:
            raise StoreUnavailable("no connection to PostgreSQL")
        return self.now[0] + self.ahead_s


def test_the_database_clock_backs_off_while_the_database_is_away():
    now = [1000.0]
    store = DownStore(now)
    clock = DatabaseClock(store, local=lambda: now[0], monotonic=lambda: now[0])  # type: ignore[arg-type]
    for _ in range(5):
        assert clock() == 1000.0  # the local time, with the last offset (none yet)
    assert store.asked == 1  # not once per call: each try waits for the pool's timeout
    asked = []
    for step in (0.5, 1.0, 1.0, 1.0, 4.0, 100.0, 100.0):
        now[0] += step
        clock()
        asked.append(store.asked)
    # tries after 1, 2, 4, ... s, at most 10 s apart
    assert asked == [1, 2, 2, 3, 4, 5, 6]
    store.ahead_s = 3600.0  # back, an hour ahead of this replica
    now[0] += 10.0
    assert clock() == now[0] + 3600.0
    asked_then = store.asked
    now[0] += 1.0
    assert clock() == now[0] + 3600.0 and store.asked == asked_then  # measured, kept


def test_a_stopped_server_holds_up_one_clock_reading_not_each(postgres_database, postgres):
    store, ahead = PostgresStore(postgres_database), [0.0]
    clock = DatabaseClock(store, local=lambda: time.time() + ahead[0], refresh_s=60)
    try:
        clock()
        ahead[0] = 61.0  # a measurement is due again
        postgres.stop()
        try:
            started = time.monotonic()
            for _ in range(5):
                clock()
            # the first reading waits for the pool (POOL_TIMEOUT_S); the others do not
            assert time.monotonic() - started < POOL_TIMEOUT_S + 1.5
        finally:
            postgres.start()
    finally:
        store.close()


def test_a_read_only_database_after_a_failover_is_unavailable_not_a_crash(postgres_database):
    """A URL still pointing at a demoted primary (or a standby) after a failover: writes are
    refused as read-only, which prunehook reports as the database being unavailable (503,
    retried) as it does a locked SQLite file, never as an error of its own."""
    store = PostgresStore(postgres_database)
    try:
        assert store.remember_delivery("before", time.time(), 86400, 90)
        with psycopg.connect(postgres_database, autocommit=True) as connection:
            name = connection.execute("SELECT current_database()").fetchone()[0]
            connection.execute(
                psycopg.sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(
                    psycopg.sql.Identifier(name)
                )
            )
            connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        try:
            store.remember_delivery("after", time.time(), 86400, 90)
        except StoreUnavailable as error:
            assert "read-only transaction" in str(error)
        else:
            raise AssertionError("a write to a read-only database went through")
        assert store.read_state("any").last_run_id is None  # reads still answer
    finally:
        store.close()
