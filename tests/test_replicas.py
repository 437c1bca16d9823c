"""Replicas on one PostgreSQL: real gunicorn instances, a real database stopped and started,
a replica killed mid-prune. The interval holds however prunehook is deployed.

Fixtures that make the database come first in each test's arguments: they are torn down
last, after the apps and servers whose runs still record into it."""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from tests.conftest import AUTH, TOKEN
from tests.harness import wait_for
from tests.harness.ssh import loopback
from webhook.config import ConfigError, load_settings
from webhook.web.context import prunehook

NAMES = [f"build-{n:02d}" for n in range(10)]


def fleet_host(make_sshd, names=NAMES):
    """One loopback sshd on an address per target (no two targets may share one)."""
    addresses = [loopback(index) for index in range(len(names))]
    return make_sshd(address=addresses[0], also_on=addresses[1:])


def fleet_file(tmp_path, host, names=NAMES) -> str:
    """A targets file naming `names`, each on an address of one loopback sshd (its guard log
    shows each)."""
    lines = [
        "[defaults]",
        'user = "root"',
        f'key_file = "{host.client_key}"',
        f'known_hosts = "{host.known_hosts}"',
        "retry_after_s = 3600",
    ]
    for name, address in zip(names, host.addresses, strict=True):
        lines += ["", f"[targets.{name}]", f'host = "{address}"', f"port = {host.port}"]
    path = tmp_path / "targets.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def runs_by_target(url: str) -> dict[str, list[tuple[str, str | None]]]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT target, result, error_kind FROM runs ORDER BY id"
        ).fetchall()
    found: dict[str, list[tuple[str, str | None]]] = {}
    for target, result, kind in rows:
        found.setdefault(target, []).append((result, kind))
    return found


# -- configuration ---------------------------------------------------------------------


def test_a_database_url_without_a_token_refuses_to_start_naming_the_variable(monkeypatch):
    monkeypatch.setenv("PRUNEHOOK_DATABASE_URL", "postgresql://u:s3cret-pw@127.0.0.1/db")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert "PRUNEHOOK_DATABASE_URL" in raised.value.errors
    assert "PRUNEHOOK_TOKEN" in str(raised.value)
    assert "s3cret-pw" not in str(raised.value)


def test_the_platforms_database_url_is_used_when_ours_is_unset(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://u@127.0.0.1/db")
    monkeypatch.setenv("PRUNEHOOK_TOKEN", TOKEN)
    settings, _ = load_settings()
    assert settings.server.database_url == "postgres://u@127.0.0.1/db"
    assert "postgres://" not in repr(settings)


def test_a_database_url_that_is_not_postgresql_is_refused(monkeypatch):
    monkeypatch.setenv("PRUNEHOOK_DATABASE_URL", "mysql://u:pw@127.0.0.1/db")
    monkeypatch.setenv("PRUNEHOOK_TOKEN", TOKEN)
    with pytest.raises(ConfigError, match="postgresql://"):
        load_settings()


# -- one process on PostgreSQL ------------------------------------------------------------


@pytest.fixture
def pg_app(postgres_database, make_app):  # the database outlives the app's runs
    return make_app(database_url=postgres_database)


def test_the_pool_is_sized_by_gunicorn_threads_and_a_bad_worker_count_is_none_of_its_business(
    postgres_database, make_app, monkeypatch
):
    monkeypatch.setenv("WEB_CONCURRENCY", "abc")  # gunicorn's, never read by the app
    monkeypatch.setenv("GUNICORN_THREADS", "5")
    store = prunehook(make_app(database_url=postgres_database)).service.store
    assert store.max_connections == 7  # a connection per request thread, and two for the runs
    monkeypatch.setenv("GUNICORN_THREADS", "many")
    with pytest.raises(ConfigError, match="GUNICORN_THREADS: must be a whole number"):
        make_app(database_url=postgres_database)


def test_readyz_follows_the_database_while_healthz_stays_alive(pg_app, postgres):
    client = pg_app.test_client()
    assert client.get("/readyz").status_code == 200
    postgres.stop()
    try:
        ready = client.get("/readyz")
        assert (ready.status_code, ready.get_json()["error"]) == (503, "database_unavailable")
        assert ready.headers["Retry-After"]
        assert client.get("/healthz").status_code == 200
    finally:
        postgres.start()
    assert client.get("/readyz").status_code == 200  # no restart needed


def test_with_the_database_down_the_skip_path_answers_and_a_start_is_503(
    postgres_database, postgres, make_app, fake_host
):
    client = make_app(database_url=postgres_database).test_client()
    assert client.post("/hooks/cron?wait=1", headers=AUTH).get_json()["run"]["result"] == "ok"
    assert client.post("/hooks/cron", headers=AUTH).get_json()["decision"] == "skipped"
    postgres.stop()
    try:
        # this replica read the state before: within the interval it still answers
        skipped = client.post("/hooks/cron", headers=AUTH)
        assert (skipped.status_code, skipped.get_json()["decision"]) == (200, "skipped")
        # a replica that never read it cannot tell: 503, and the sender retries
        fresh = make_app(database_url=postgres_database).test_client()
        refused = fresh.post("/hooks/cron", headers=AUTH)
        assert refused.status_code == 503 and refused.headers["Retry-After"]
        assert len(fake_host.commands) == 1
    finally:
        postgres.start()
    answer = fresh.post("/hooks/cron", headers=AUTH)  # no restart
    assert (answer.status_code, answer.get_json()["decision"]) == (200, "skipped")


def test_wait_for_run_answers_only_once_the_run_is_over(make_app, fake_host):
    client = make_app(wait_for_run=True).test_client()
    answer = client.post("/hooks/cron", headers=AUTH)
    assert answer.status_code == 200
    assert answer.get_json()["run"]["result"] == "ok"


def test_decisions_use_the_databases_clock_not_the_replicas_own(
    postgres_database, make_app, fake_host, clock
):
    """Two replicas whose own clocks disagree by an hour decide on one time."""
    first = make_app(database_url=postgres_database).test_client()
    assert first.post("/hooks/cron?wait=1", headers=AUTH).get_json()["run"]["result"] == "ok"
    clock.advance(3 * 3600)  # this replica's clock runs hours ahead: the interval is 6 h
    ahead = make_app(database_url=postgres_database)
    assert ahead.test_client().post("/hooks/cron", headers=AUTH).get_json()["decision"] == (
        "skipped"
    )
    assert abs(prunehook(ahead).service.clock() - time.time()) < 5


# -- replicas under gunicorn ---------------------------------------------------------------


@pytest.fixture
def replica_env(service_env, postgres_database, make_sshd, tmp_path):
    def make(host=None, **variables: str) -> dict[str, str]:
        host = host or make_sshd()
        env = service_env(host, **variables)
        del env["PRUNEHOOK_DB_PATH"]
        return env | {"PRUNEHOOK_DATABASE_URL": postgres_database}

    return make


def test_an_alert_storm_split_between_two_replicas_prunes_each_target_once(
    replica_env, postgres_database, serve, make_sshd, tmp_path
):
    host = fleet_host(make_sshd)  # its docker is unreachable: each prune fails, retried in an hour
    env = replica_env(host, PRUNEHOOK_TARGETS_FILE=fleet_file(tmp_path, host))
    replicas = [serve(env, workers=2), serve(env, workers=2)]
    calls = [
        (replicas[n % 2], {"host": NAMES[n % len(NAMES)], "used_percent": 97}) for n in range(1200)
    ]

    with ThreadPoolExecutor(max_workers=48) as pool:
        answers = list(pool.map(lambda c: c[0].call("/hooks/watchdog", body=c[1]), calls))

    assert {code for code, _ in answers} <= {200, 202}
    started = [body["results"][0]["target"] for _, body in answers if body["decision"] == "started"]
    assert sorted(started) == NAMES
    wait_for(lambda: len(host.prunes_run()) == len(NAMES), 60, "every prune to reach the host")
    runs = wait_for(
        lambda: (
            (found := runs_by_target(postgres_database))
            and all(r[0][0] != "running" for r in found.values())
            and found
        ),
        60,
        "every run to be recorded",
    )
    assert sorted(runs) == NAMES
    assert all(len(each) == 1 for each in runs.values())


def test_a_replica_killed_mid_prune_holds_the_target_until_its_lease_ends(
    replica_env, postgres_database, serve, make_sshd, docker_engine
):
    host = make_sshd(docker_host=docker_engine.host)
    # a lease of 12 s: long enough that a loaded machine still asks while it holds
    env = replica_env(host, PRUNEHOOK_TIMEOUT_S="2", PRUNEHOOK_LEASE_GRACE_S="10")
    doomed, survivor = serve(env, workers=1), serve(env, workers=1)
    with docker_engine.paused(seconds=8):
        assert doomed.call("/hooks/cron")[1]["decision"] == "started"
        os.killpg(doomed.process.pid, signal.SIGKILL)
        busy = survivor.call("/hooks/cron")[1]
        assert busy["decision"] == "busy"
        wait_for(lambda: survivor.status()["in_flight"]["lease_expired"], 60, "the lease's end")
        taken = survivor.call("/hooks/cron")[1]
    assert taken["decision"] == "started"
    assert "given up as lost" in taken["reason"]
    runs = runs_by_target(postgres_database)["127.0.0.1"]
    assert runs[0] == ("lost", "lost")


def test_replicas_recover_when_the_database_comes_back_and_record_what_finished_meanwhile(
    replica_env, postgres, postgres_database, serve, make_sshd, docker_engine
):
    host = make_sshd(docker_host=docker_engine.host)
    env = replica_env(host, PRUNEHOOK_TIMEOUT_S="30")
    replicas = [serve(env, workers=1), serve(env, workers=1)]
    with docker_engine.paused():  # the prune hangs until the database is away
        assert replicas[0].call("/hooks/cron")[1]["decision"] == "started"
        postgres.stop()
    try:
        log = replicas[0].log_path
        assert log is not None
        wait_for(
            lambda: "cannot record the outcome (attempt 1)" in log.read_text(),
            60,
            "the prune to finish while the database is away",
        )
        for replica in replicas:
            assert replica.call("/readyz", None, "GET")[0] == 503
            assert replica.call("/healthz", None, "GET")[0] == 200
    finally:
        postgres.start()

    def recorded() -> list | None:
        runs = runs_by_target(postgres_database).get("127.0.0.1", [])
        return runs if runs and runs[0][0] != "running" else None

    assert wait_for(recorded, 60, "the finished run to be recorded") == [("ok", None)]
    for replica in replicas:
        assert replica.call("/readyz", None, "GET")[0] == 200
        assert replica.call("/hooks/cron")[1]["decision"] == "skipped"


def test_state_shown_by_status_is_the_same_on_every_replica(replica_env, serve):
    env = replica_env()
    replicas = [serve(env, workers=1), serve(env, workers=1)]
    replicas[0].call("/hooks/cron")
    shown = [json.dumps(r.status()["targets"][0]["last_run_ts"]) for r in replicas]
    assert shown[0] == shown[1] != "null"


# -- moving an existing installation --------------------------------------------------------


def test_state_copy_moves_rows_history_and_delivery_ids_so_the_move_does_not_prune(
    postgres_database, make_app, fake_host, clock
):
    local = make_app()
    client = local.test_client()
    assert client.post("/hooks/cron?wait=1", headers=AUTH).get_json()["run"]["result"] == "ok"
    # a critical alert the host's own measure contradicts (60 % used): the interval still
    # counts from the prune before it, on the new database too
    clock.advance(900)
    alert = {"host": "127.0.0.1", "used_percent": 100}
    answer = client.post("/hooks/watchdog?wait=1", headers=AUTH, json=alert).get_json()
    assert answer["run"]["result"] == "ok" and len(fake_host.commands) == 1
    local_store = prunehook(local).service.store
    local_store.remember_delivery("msg_1", clock.now, 86400, 90)
    local_store.settle_delivery("msg_1")

    result = local.test_cli_runner().invoke(args=["state", "copy", "--to", postgres_database])
    assert result.exit_code == 0, result.output
    assert "copied 1 target(s), 2 run(s) and 1 delivery id(s)" in result.output

    moved = make_app(database_url=postgres_database)
    store = prunehook(moved).service.store
    record = store.target_record("127.0.0.1")
    assert record is not None and record.last_result == "ok"
    assert record == local_store.target_record("127.0.0.1")
    assert record.interval_started_ts == record.last_started_ts - 900
    assert [run.result for run in store.recent_runs("127.0.0.1")] == ["ok", "ok"]
    assert not store.remember_delivery("msg_1", clock.now + 1, 86400, 90)
    # the interval still holds on the new database (on its clock: the run was just now)
    skipped = moved.test_client().post("/hooks/cron", headers=AUTH).get_json()
    assert skipped["decision"] == "skipped"


def test_state_copy_refuses_a_database_that_has_state_for_these_targets(
    postgres_database, make_app, fake_host
):
    local = make_app()
    local.test_client().post("/hooks/cron?wait=1", headers=AUTH)
    runner = local.test_cli_runner()
    assert runner.invoke(args=["state", "copy", "--to", postgres_database]).exit_code == 0
    again = runner.invoke(args=["state", "copy", "--to", postgres_database])
    assert again.exit_code == 1
    assert "already has state for 127.0.0.1; nothing was copied" in again.output
    with psycopg.connect(postgres_database) as connection:
        assert connection.execute("SELECT count(*) FROM runs").fetchone() == (1,)


def test_state_copy_refuses_a_state_without_runs_as_read_from_another_folder(
    postgres_database, make_app
):
    """An installation's state read from the wrong folder is a new, empty one: copying it
    would let the replicas prune every target at once."""
    result = make_app().test_cli_runner().invoke(args=["state", "copy", "--to", postgres_database])
    assert result.exit_code == 1
    assert "keeps no run" in result.output and "nothing was copied" in result.output
    with psycopg.connect(postgres_database) as connection:
        tables = connection.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'runs'")
        assert tables.fetchone() == (0,)


def test_state_copy_says_the_source_it_cannot_read_and_copies_nothing(postgres_database, make_app):
    app = make_app()
    source = Path(prunehook(app).settings.server.db_path)
    source.write_bytes(b"not a database, but a file that was overwritten" * 100)
    result = app.test_cli_runner().invoke(args=["state", "copy", "--to", postgres_database])
    assert result.exit_code == 1
    assert f"cannot read {source}" in result.output
    assert "destination" not in result.output


def test_state_copy_has_help(make_app):
    result = make_app().test_cli_runner().invoke(args=["state", "copy", "--help"])
    assert result.exit_code == 0 and "--to URL" in result.output


def test_check_says_whether_postgresql_answers(postgres_database, postgres, make_app):
    runner = make_app(database_url=postgres_database).test_cli_runner()
    assert "PASS  database     PostgreSQL answers" in runner.invoke(args=["check"]).output
    postgres.stop()
    try:
        down = runner.invoke(args=["check"])
    finally:
        postgres.start()
    assert down.exit_code == 1
    assert "FAIL  database     PostgreSQL:" in down.output
    assert "fix: check PRUNEHOOK_DATABASE_URL" in down.output


def test_with_a_database_url_a_signing_secret_alone_makes_no_token_file(
    postgres_database, make_app, tmp_path
):
    app = make_app(
        database_url=postgres_database, token="", hmac_secret="whsec_c2VjcmV0LWZvci1yZXBsaWNhcw=="
    )
    assert not (tmp_path / "instance" / "hook-token").exists()
    assert app.test_client().post("/hooks/cron", headers=AUTH).status_code == 401


def test_the_refusal_names_the_platforms_variable_when_that_is_the_one_set(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://u@127.0.0.1/db")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert list(raised.value.errors) == ["DATABASE_URL"]
