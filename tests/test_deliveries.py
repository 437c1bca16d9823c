"""Signed delivery ids in SQLite: replays caught, the table indexed and bounded."""

from __future__ import annotations

import sqlite3

import pytest

from tests.conftest import START
from webhook import store as store_module
from webhook.store import CAP_DELIVERIES, EXPIRE_DELIVERIES, Store

DAY = 24 * 3600


@pytest.fixture
def store(tmp_path) -> Store:
    store = Store(tmp_path / "state.sqlite3")
    store.init_schema()
    return store


def ids_kept(store: Store) -> list[str]:
    with sqlite3.connect(store.path) as connection:
        return [row[0] for row in connection.execute("SELECT id FROM deliveries ORDER BY rowid")]


def test_a_delivery_id_is_a_replay_until_forgotten(store):
    assert store.remember_delivery("msg_1", START, keep_s=DAY)
    assert not store.remember_delivery("msg_1", START + 60, keep_s=DAY)
    store.forget_delivery("msg_1")
    assert store.remember_delivery("msg_1", START + 120, keep_s=DAY)


def test_ids_older_than_the_keep_time_are_dropped(store):
    store.remember_delivery("old", START, keep_s=DAY)
    store.remember_delivery("new", START + DAY + 1, keep_s=DAY)
    assert ids_kept(store) == ["new"]


def test_the_table_keeps_at_most_the_newest_ids(store, monkeypatch):
    monkeypatch.setattr(store_module, "DELIVERIES_LIMIT", 5)
    for n in range(8):
        assert store.remember_delivery(f"msg_{n}", START + n, keep_s=DAY)
    assert ids_kept(store) == [f"msg_{n}" for n in range(3, 8)]
    assert not store.remember_delivery("msg_7", START + 9, keep_s=DAY)


def plan(store: Store, sql: str, parameters: tuple) -> str:
    with sqlite3.connect(store.path) as connection:
        rows = connection.execute(f"EXPLAIN QUERY PLAN {sql}", parameters).fetchall()
    return " | ".join(row[-1] for row in rows)


def test_expiring_and_capping_ids_search_an_index_never_scan_the_table(store):
    expiry = plan(store, EXPIRE_DELIVERIES, (START,))
    assert "INDEX deliveries_by_time" in expiry
    cap = plan(store, CAP_DELIVERIES, (10,))
    assert "SCAN deliveries" not in cap
    assert "SEARCH deliveries USING INTEGER PRIMARY KEY" in cap
