"""Database faults: a long lock, a read-only file, kill -9 during writes. 503, never a lost row."""

from __future__ import annotations

import random
import select
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.conftest import AUTH, missing
from tests.harness import REPO
from webhook.store import NewRun
from webhook.store import sqlite as store_module
from webhook.store.sqlite import SQLiteStore
from webhook.web.context import prunehook


@pytest.fixture
def short_busy_timeout(monkeypatch):
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_MS", 200)


@pytest.fixture
def write_lock(app):
    """Another process's long write transaction on the state database."""
    locker = sqlite3.connect(prunehook(app).settings.server.db_path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    yield locker
    locker.execute("ROLLBACK")
    locker.close()


def test_database_locked_past_busy_timeout_is_503_and_runs_nothing(
    client, fake_host, short_busy_timeout, write_lock
):
    response = client.post("/hooks/cron", headers=AUTH)
    assert response.status_code == 503
    assert response.get_json()["error"] == "database_unavailable"
    assert response.headers["Retry-After"] == "5"
    assert fake_host.commands == []
    write_lock.execute("ROLLBACK")
    write_lock.execute("BEGIN")
    assert client.post("/hooks/cron", headers=AUTH).status_code == 202


def test_skip_path_answers_while_the_database_is_write_locked(
    app, client, fake_host, short_busy_timeout
):
    assert client.post("/hooks/cron?wait=1", headers=AUTH).status_code == 200
    locker = sqlite3.connect(prunehook(app).settings.server.db_path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        response = client.post("/hooks/cron", headers=AUTH)
        assert (response.status_code, response.get_json()["decision"]) == (200, "skipped")
        assert client.get("/status").status_code == 200
    finally:
        locker.execute("ROLLBACK")
        locker.close()


@pytest.fixture
def immutable(tmp_path):
    """Make a file read-only even for root (chattr +i), and writable again afterwards."""
    made: list[str] = []

    def make(path: str) -> None:
        if subprocess.run(["chattr", "+i", path], capture_output=True).returncode != 0:
            missing("chattr +i (ext4 or a file system with the immutable flag)")
        made.append(path)

    yield make
    for path in made:
        subprocess.run(["chattr", "-i", path], check=True)


def test_read_only_database_is_503_and_runs_nothing(make_app, fake_host, immutable):
    first = make_app()
    db_path = prunehook(first).settings.server.db_path
    prunehook(first).service.store.close()
    immutable(db_path)

    client = make_app().test_client()  # a restart: the app still starts
    response = client.post("/hooks/cron", headers=AUTH)

    assert response.status_code == 503
    assert response.get_json()["error"] == "database_unavailable"
    assert fake_host.commands == []


KILLED_WRITER = """
import sys
from tests.harness import succeeded_outcome
from webhook.store import NewRun
from webhook.store.sqlite import SQLiteStore
store = SQLiteStore(sys.argv[1])
done = succeeded_outcome(10**9, stdout_tail="x" * 4000)
record = store.target_record("t")
# after the last start (and its lease) of the writer killed before this one
base = (record.last_started_ts if record else 0.0) + 10
for step in range(10**9):
    now = base + step
    run_id = store.claim("t", store.read_state("t"), NewRun("loop", "c"), now, 1)
    store.finish("t", run_id, done, now)
    if step == 0:
        print("writing", flush=True)  # the kill must land among writes, not during imports
"""


def last_run_id(db_path) -> int:
    record = SQLiteStore(db_path).target_record("t")
    return record.last_run_id or 0 if record else 0


def test_integrity_holds_after_kill_9_during_writes(tmp_path):
    db_path = tmp_path / "state.sqlite3"
    SQLiteStore(db_path).ensure_schema()
    chance = random.Random(20261125)
    for _ in range(12):
        before = last_run_id(db_path)
        writer = subprocess.Popen(
            [sys.executable, "-c", KILLED_WRITER, str(db_path)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        ready, _, _ = select.select([writer.stdout], [], [], 60)
        assert ready and writer.stdout.readline() == "writing\n", "the writer never wrote"
        time.sleep(chance.random() * 0.2)
        writer.kill()
        writer.wait()
        writer.stdout.close()
        assert last_run_id(db_path) > before, "the writer was killed before any write"
    with sqlite3.connect(db_path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    store = SQLiteStore(db_path)
    record = store.target_record("t")
    assert record is not None and record.last_run_id is not None
    assert store.claim("t", store.read_state("t"), NewRun("after", "c"), 1e12, 1) is not None


@pytest.fixture
def small_volume(tmp_path):
    """A real 512 KiB file system (tmpfs) for the state database; `fill()` uses up its space
    and `free()` gives it back, as a full disk and an operator's clean-up would."""
    mount_point = tmp_path / "volume"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount_point)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        missing("mount -t tmpfs (root)")
    filler = mount_point / "filler"

    class Volume:
        path = mount_point

        @staticmethod
        def fill() -> None:
            with filler.open("ab", buffering=0) as out:
                try:
                    while True:
                        out.write(b"\0" * 4096)
                except OSError:
                    pass  # ENOSPC: the volume is full

        @staticmethod
        def free() -> None:
            filler.unlink()

    yield Volume
    subprocess.run(["umount", "-l", str(mount_point)], check=True)


def test_schema_that_could_not_be_created_at_start_is_created_once_space_is_freed(
    make_app, fake_host, small_volume
):
    small_volume.fill()
    app = make_app(db_path=str(small_volume.path / "state.sqlite3"))  # starts, the disk full
    client = app.test_client()
    full = client.post("/hooks/cron", headers=AUTH)
    assert (full.status_code, full.get_json()["error"]) == (503, "database_unavailable")
    assert client.get("/status").status_code == 503
    assert fake_host.commands == []

    small_volume.free()  # the operator frees space; nobody restarts the service

    assert client.post("/hooks/cron?wait=1", headers=AUTH).get_json()["decision"] == "started"
    assert len(fake_host.commands) == 1
    status = client.get("/status")
    assert status.status_code == 200
    assert status.get_json()["last_result"] == "ok"
