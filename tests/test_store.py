"""The state row on a real SQLite file: atomic claims, leases, history, restarts."""

from __future__ import annotations

import threading

from tests.conftest import AUTH
from tests.harness import failed_outcome, succeeded_outcome
from webhook.core.decision import Action, Policy
from webhook.core.outcome import RunOutcome
from webhook.store.sqlite import HISTORY_LIMIT, Store

TARGET = "ci@127.0.0.1:22"
POLICY = Policy(enabled=True, has_target=True, interval_s=3600, retry_after_s=600)
T0 = 1_000_000.0
COMMAND = "docker builder prune -f --filter until=24h"


def claim(store: Store, now: float, force: bool = False):
    return store.claim(
        TARGET, now, POLICY, trigger="test", command=COMMAND, lease_s=180, force=force
    )


def outcome(ok: bool = True, reclaimed: str = "2GB", size: int = 2_000_000_000) -> RunOutcome:
    return succeeded_outcome(size, reclaimed=reclaimed) if ok else failed_outcome()


def new_store(tmp_path) -> Store:
    store = Store(tmp_path / "state.sqlite3")
    store.init_schema()
    return store


def test_concurrent_claims_start_exactly_one_run(tmp_path):
    store = new_store(tmp_path)
    barrier = threading.Barrier(16)
    actions: list[Action] = []

    def contend() -> None:
        barrier.wait()
        actions.append(claim(new_store(tmp_path), T0).decision.action)

    threads = [threading.Thread(target=contend) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert actions.count(Action.STARTED) == 1
    assert set(actions) <= {Action.STARTED, Action.BUSY}
    assert len(store.recent_runs(TARGET)) == 1


def test_state_survives_a_restart(tmp_path):
    store = new_store(tmp_path)
    run_id = claim(store, T0).run_id
    store.finish(TARGET, run_id, outcome(), T0 + 5)
    reopened = new_store(tmp_path)
    row = reopened.target_row(TARGET)
    assert (row["last_result"], row["last_reclaimed"], row["last_started_ts"]) == ("ok", "2GB", T0)
    assert claim(reopened, T0 + 60).decision.action == Action.SKIPPED


def test_dead_runs_late_finish_never_overwrites_a_newer_run(tmp_path):
    store = new_store(tmp_path)
    dead = claim(store, T0).run_id
    assert claim(store, T0 + 100).decision.action == Action.BUSY
    newer = claim(store, T0 + 180)
    assert newer.decision.action == Action.STARTED
    assert newer.decision.lost_run_id == dead
    assert store.run(dead)["result"] == "lost"
    store.finish(TARGET, newer.run_id, outcome(reclaimed="5GB", size=5_000_000_000), T0 + 200)
    assert store.finish(TARGET, dead, outcome(reclaimed="1GB", size=1), T0 + 300) is False
    row = store.target_row(TARGET)
    assert (row["last_run_id"], row["last_reclaimed"], row["inflight_run_id"]) == (
        newer.run_id,
        "5GB",
        None,
    )


def test_history_is_bounded(tmp_path):
    store = new_store(tmp_path)
    for index in range(HISTORY_LIMIT + 20):
        run_id = claim(store, T0 + index, force=True).run_id
        store.finish(TARGET, run_id, outcome(), T0 + index)
    runs = store.recent_runs(TARGET, limit=1000)
    assert len(runs) == HISTORY_LIMIT
    assert runs[0]["id"] == HISTORY_LIMIT + 20


def test_a_state_file_from_the_first_schema_gains_the_new_columns(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL,"
            " trigger TEXT NOT NULL, command TEXT NOT NULL, started_ts REAL NOT NULL,"
            " finished_ts REAL, result TEXT NOT NULL, rc INTEGER, reclaimed TEXT,"
            " reclaimed_bytes INTEGER, error TEXT, error_kind TEXT, duration_s REAL,"
            " stdout_tail TEXT, stderr_tail TEXT)"
        )
    connection.close()
    store = Store(path)
    store.init_schema()
    run_id = store.claim(
        TARGET, T0, POLICY, trigger="t", command=COMMAND, lease_s=180, request_id="r-1"
    ).run_id
    assert store.run(run_id)["request_id"] == "r-1"


def test_a_store_creates_its_schema_on_first_use(tmp_path):
    store = Store(tmp_path / "not-yet" / "state.sqlite3")  # no init_schema: nor the folder
    assert claim(store, T0).decision.action == Action.STARTED
    assert len(store.recent_runs(TARGET)) == 1


def test_a_run_claimed_through_another_connection_is_seen_by_the_next_trigger(tmp_path):
    worker_a, worker_b = new_store(tmp_path), new_store(tmp_path)  # two gunicorn workers
    run = claim(worker_a, T0).run_id
    worker_a.finish(TARGET, run, outcome(), T0 + 5)
    assert claim(worker_a, T0 + 10).decision.action == Action.SKIPPED

    assert claim(worker_b, T0 + 20, force=True).decision.action == Action.STARTED

    assert claim(worker_a, T0 + 30).decision.action == Action.BUSY


def test_a_workers_own_finish_is_seen_by_its_next_trigger(tmp_path):
    store, other_worker = new_store(tmp_path), new_store(tmp_path)
    long_lease = {"trigger": "test", "command": COMMAND, "lease_s": 3000}
    run = store.claim(TARGET, T0, POLICY, **long_lease).run_id
    other_worker.claim("another-target", T0 + 1, POLICY, **long_lease)  # any commit elsewhere
    busy = store.claim(TARGET, T0 + 2, POLICY, **long_lease).decision  # read while in flight
    assert busy.action == Action.BUSY

    store.finish(TARGET, run, outcome(ok=False), T0 + 3)

    # the failed run may be retried after the retry delay, long before its lease would end
    retry = store.claim(TARGET, T0 + 3 + 600, POLICY, **long_lease).decision
    assert retry.action == Action.STARTED


def test_upgrade_carries_a_row_keyed_by_the_ssh_endpoint_over_to_the_target_name(tmp_path):
    store = Store(tmp_path / "state.sqlite3")
    store.init_schema()
    legacy = "ci@build-1.example:22"
    claim = store.claim(legacy, 100.0, POLICY, trigger="cron", command="prune", lease_s=60)
    store.finish(legacy, claim.run_id, succeeded_outcome(), 110.0)

    assert store.adopt_legacy_state("build-1.example", legacy) == legacy
    assert store.target_row("build-1.example")["last_started_ts"] == 100.0
    assert [run["id"] for run in store.recent_runs("build-1.example")] == [claim.run_id]
    assert store.target_row(legacy) is None
    # the upgrade does not prune at once: the interval still holds for the named target
    assert (
        store.claim(
            "build-1.example", 200.0, POLICY, trigger="cron", command="p", lease_s=60
        ).decision.action
        == Action.SKIPPED
    )
    assert store.adopt_legacy_state("build-1.example", legacy) is None  # once only


def test_a_changed_ssh_user_keeps_the_state_of_its_target(make_app, fake_host, clock):
    first = make_app(ssh_user="ci").test_client()
    assert first.post("/hooks/cron", headers=AUTH).get_json()["decision"] == "started"
    first.application.extensions["prunehook"].join_all(10)

    renamed = make_app(ssh_user="deploy").test_client()
    assert renamed.post("/hooks/cron", headers=AUTH).get_json()["decision"] == "skipped"
    assert fake_host.targets == ["127.0.0.1"]
