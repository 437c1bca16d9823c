"""What only the PostgreSQL backend does: versioned migrations under an advisory lock,
several replicas starting at once, no session state (PgBouncer's transaction mode)."""

from __future__ import annotations

import threading

import psycopg

from webhook.store import NewRun
from webhook.store.postgres import SCHEMA_VERSION, PostgresStore

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
        assert store.claim("build-1", state, NewRun("cron", "prune"), 200.0, 180) is not None
    finally:
        store.close()


def test_replicas_starting_at_once_migrate_the_database_once(postgres_database):
    stores = [PostgresStore(postgres_database) for _ in range(6)]
    barrier = threading.Barrier(len(stores))
    failures: list[BaseException] = []

    def start(store: PostgresStore) -> None:
        barrier.wait()
        try:
            store.ensure_schema()
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=start, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
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
