"""What only the SQLite backend does: versioned migrations of files made by older
releases, the schema made on first use, the upgrade to target names."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import fields
from pathlib import Path

import pytest

from tests.conftest import AUTH
from tests.harness import succeeded_outcome
from webhook.core.decision import Result
from webhook.store import NewRun, StoreUnavailable
from webhook.store.base import TABLES
from webhook.store.postgres import SCHEMA_VERSION as POSTGRES_SCHEMA_VERSION
from webhook.store.sqlite import SCHEMA_VERSION, SQLiteStore

T0 = 1_000_000.0
RUN = NewRun("cron", "prune")


def claim_now(store: SQLiteStore, target: str, now: float) -> int | None:
    return store.claim(target, store.read_state(target), RUN, now, 180)


def test_a_file_from_the_first_schema_is_migrated_to_the_current_version(tmp_path):
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL,"
            " trigger TEXT NOT NULL, command TEXT NOT NULL, started_ts REAL NOT NULL,"
            " finished_ts REAL, result TEXT NOT NULL, rc INTEGER, reclaimed TEXT,"
            " reclaimed_bytes INTEGER, error TEXT, error_kind TEXT, duration_s REAL,"
            " stdout_tail TEXT, stderr_tail TEXT)"
        )
        connection.execute("CREATE TABLE deliveries (id TEXT PRIMARY KEY, seen_ts REAL NOT NULL)")
        connection.execute("INSERT INTO deliveries VALUES ('msg_old', ?)", (T0,))
    connection.close()
    store = SQLiteStore(path)
    store.ensure_schema()
    assert store.schema_version() == SCHEMA_VERSION
    run_id = store.claim("t", store.read_state("t"), NewRun("t", "c", 7, "r-1"), T0, 180)
    assert run_id is not None
    run = store.run(run_id)
    assert run is not None and run.request_id == "r-1"
    # an id remembered by the old release had been answered: still a replay
    assert not store.remember_delivery("msg_old", T0 + 1, keep_s=86400, pending_s=90)


def test_a_file_of_a_newer_schema_is_refused_not_rewritten(tmp_path):
    path = tmp_path / "newer.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(StoreUnavailable, match="newer than this prunehook"):
        SQLiteStore(path).ensure_schema()


def test_workers_starting_at_once_migrate_the_file_once(tmp_path):
    path = tmp_path / "state.sqlite3"
    run_id = file_of_version(path, 1)
    stores = [SQLiteStore(path) for _ in range(4)]  # a connection each, as workers have
    barrier = threading.Barrier(len(stores))
    failures: list[BaseException] = []

    def start(store: SQLiteStore) -> None:
        barrier.wait(10)
        try:
            store.ensure_schema()
        except BaseException as error:  # a second migration: "duplicate column name"
            failures.append(error)

    threads = [threading.Thread(target=start, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    assert {store.schema_version() for store in stores} == {SCHEMA_VERSION}
    assert stores[0].read_state("t").inflight_run_id == run_id


def test_a_store_creates_its_schema_on_first_use(tmp_path):
    store = SQLiteStore(tmp_path / "not-yet" / "state.sqlite3")  # nor the folder
    assert claim_now(store, "t", T0) is not None
    assert len(store.recent_runs("t")) == 1


def test_upgrade_carries_a_row_keyed_by_the_ssh_endpoint_over_to_the_target_name(tmp_path):
    store = SQLiteStore(tmp_path / "state.sqlite3")
    legacy = "ci@build-1.example:22"
    run_id = claim_now(store, legacy, 100.0)
    assert run_id is not None
    store.finish(legacy, run_id, succeeded_outcome(), 110.0)

    assert store.adopt_legacy_state("build-1.example", legacy) == legacy
    record = store.target_record("build-1.example")
    assert record is not None and record.last_started_ts == 100.0
    assert record.last_result == Result.OK
    assert [run.id for run in store.recent_runs("build-1.example")] == [run_id]
    assert store.target_record(legacy) is None
    assert store.adopt_legacy_state("build-1.example", legacy) is None  # once only


def test_a_started_app_carries_over_the_state_keyed_by_its_own_user_host_and_port(
    tmp_path, make_app
):
    store = SQLiteStore(tmp_path / "state.sqlite3")
    ids = {}
    # the host's row, and a later one of the same host as another user
    for key, ts in (("deploy@build-1.example:2222", 100.0), ("ci@build-1.example:22", 200.0)):
        ids[key] = claim_now(store, key, ts)
        store.finish(key, ids[key], succeeded_outcome(), ts + 10)
    make_app(ssh_host="build-1.example", ssh_user="deploy", ssh_port=2222)
    run_id = ids["deploy@build-1.example:2222"]
    record = store.target_record("build-1.example")
    assert record is not None and record.last_run_id == run_id


def test_a_changed_ssh_user_keeps_the_state_of_its_target(make_app, fake_host, clock):
    first = make_app(ssh_user="ci").test_client()
    assert first.post("/hooks/cron", headers=AUTH).get_json()["decision"] == "started"
    first.application.extensions["prunehook"].join_all(10)

    renamed = make_app(ssh_user="deploy").test_client()
    assert renamed.post("/hooks/cron", headers=AUTH).get_json()["decision"] == "skipped"
    assert fake_host.targets == ["127.0.0.1"]


class _FailingConnection:
    """A connection whose disk went away: what a real I/O error looks like to the store."""

    def execute(self, sql: str, parameters: object = ()) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    def close(self) -> None:
        pass


def test_a_state_read_that_fails_after_the_first_is_unavailable_and_the_next_recovers(tmp_path):
    store = SQLiteStore(tmp_path / "state.sqlite3")
    assert claim_now(store, "t", T0) is not None
    expected = store.read_state("t")  # the thread's connection is made and kept
    store._local.connection = _FailingConnection()
    with pytest.raises(StoreUnavailable, match="disk I/O error"):
        store.read_state("t")
    assert store.read_state("t") == expected  # from a fresh connection


# the columns each release added to a file of user_version n (taking it to n + 1)
ADDED_BY_VERSION = {
    1: {"runs": ("worker_pid", "request_id")},
    2: {"deliveries": ("settled",)},
    3: {"targets": ("retry_at_ts",)},
    4: {
        "runs": (
            "steps", "notes", "freed_bytes", "disk_size", "disk_free_before",
            "disk_free_after", "cache_before", "cache_after", "goal_met", "free_short_bytes",
            "cache_over_bytes", "keep_storage_bytes", "docker_version", "buildx_version",
        ),
        "targets": (
            "last_disk_size", "last_disk_free", "last_cache", "last_measured_ts",
            "last_freed_bytes", "last_goal_met", "last_free_short_bytes",
        ),
    },
    5: {"runs": ("forecast",), "targets": ("measuring_until_ts", "forecast")},
    6: {"targets": ("interval_started_ts", "uncounted_run_id")},
    7: {"runs": ("needed",)},
}  # fmt: skip


# the columns no listed release added: the first schema's, and each table made whole at once
FIRST_COLUMNS = {
    "targets": (
        "target", "last_run_id", "last_started_ts", "last_finished_ts", "last_result",
        "inflight_run_id", "lease_expires_ts", "inflight_started_ts", "last_success_ts",
        "last_reclaimed", "last_reclaimed_bytes", "last_error", "last_error_kind",
    ),
    "runs": (
        "id", "target", "trigger", "command", "started_ts", "result", "finished_ts", "rc",
        "reclaimed", "reclaimed_bytes", "error", "error_kind", "duration_s", "stdout_tail",
        "stderr_tail",
    ),
    "deliveries": ("id", "seen_ts"),
    "samples": ("id", "target", "ts", "kind", "disk_size", "disk_free", "cache"),
}  # fmt: skip


def test_a_new_column_comes_with_a_new_schema_version_of_both_backends():
    """A column a record gains is listed as added by the version before this one, and both
    backends' versions move together, so an older release never writes to a newer file."""
    assert sorted(ADDED_BY_VERSION) == list(range(1, SCHEMA_VERSION))
    declared = {
        table: set(FIRST_COLUMNS[table]).union(
            *(added.get(table, ()) for added in ADDED_BY_VERSION.values())
        )
        for table in FIRST_COLUMNS
    }
    assert declared == {table: {f.name for f in fields(record)} for table, record in TABLES.items()}
    assert POSTGRES_SCHEMA_VERSION == SCHEMA_VERSION - 2  # PostgreSQL came with version 3


def file_of_version(path: Path, version: int) -> int:
    """A state file as `version` left it, with a run in flight on "t" (its id)."""
    store = SQLiteStore(path)
    run_id = claim_now(store, "t", T0)
    assert run_id is not None
    store.remember_delivery("msg_old", T0, keep_s=86400, pending_s=90)
    store.close()
    with sqlite3.connect(path) as connection:
        for later in range(version, SCHEMA_VERSION):
            for table, columns in ADDED_BY_VERSION[later].items():
                for column in columns:
                    connection.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        connection.execute(f"PRAGMA user_version = {version}")
    connection.close()
    return run_id


@pytest.mark.parametrize("version", sorted(ADDED_BY_VERSION))
def test_a_file_of_every_earlier_version_keeps_its_state_and_is_migrated(tmp_path, version):
    path = tmp_path / "old.sqlite3"
    run_id = file_of_version(path, version)
    store = SQLiteStore(path)
    store.ensure_schema()
    assert store.schema_version() == SCHEMA_VERSION
    assert store.read_state("t").inflight_run_id == run_id
    assert store.finish("t", run_id, succeeded_outcome(), T0 + 5)
    run = store.run(run_id)
    assert run is not None and (run.result, run.steps) == (Result.OK, ())
    assert claim_now(store, "t", T0 + 10**6) is not None
