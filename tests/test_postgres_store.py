"""What only the PostgreSQL backend does: versioned migrations under an advisory lock,
several replicas starting at once, no session state (PgBouncer's transaction mode)."""

from __future__ import annotations

import threading

import psycopg

from webhook.store import NewRun
from webhook.store.postgres import MIGRATIONS, SCHEMA_VERSION, PostgresStore


def test_a_database_made_by_the_first_schema_is_migrated_to_the_current_one(postgres_database):
    with psycopg.connect(postgres_database, autocommit=True) as connection:
        for statement in MIGRATIONS[0]:
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
        for statements in MIGRATIONS[:2]:
            for statement in statements:
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
