"""What only the PostgreSQL backend does: migrating a database made by an older release."""

from __future__ import annotations

import psycopg

from webhook.store.postgres import MIGRATIONS, SCHEMA_VERSION, PostgresStore


def test_a_database_of_the_first_schema_is_migrated_keeping_its_runs(postgres_database):
    with psycopg.connect(postgres_database, autocommit=True) as connection:
        for statement in MIGRATIONS[0]:
            connection.execute(statement)
        connection.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        connection.execute("INSERT INTO schema_version VALUES (1)")
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
