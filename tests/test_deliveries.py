"""Signed delivery ids in SQLite: replays caught, the table indexed and bounded."""

from __future__ import annotations

import sqlite3

import pytest

from tests.conftest import START
from webhook.store import base
from webhook.store.base import CAP_DELIVERIES, EXPIRE_DELIVERIES
from webhook.store.sqlite import SQLiteStore

DAY = 24 * 3600


@pytest.fixture
def store(tmp_path) -> SQLiteStore:
    store = SQLiteStore(tmp_path / "state.sqlite3")
    store.ensure_schema()
    return store


def remember(store: SQLiteStore, delivery_id: str, now: float) -> bool:
    return store.remember_delivery(delivery_id, now, keep_s=DAY, pending_s=90)


def ids_kept(store: SQLiteStore) -> list[str]:
    with sqlite3.connect(store.path) as connection:
        return [row[0] for row in connection.execute("SELECT id FROM deliveries ORDER BY rowid")]


def test_ids_older_than_the_keep_time_are_dropped(store):
    remember(store, "old", START)
    remember(store, "new", START + DAY + 1)
    assert ids_kept(store) == ["new"]


def test_the_table_keeps_at_most_the_newest_ids(store, monkeypatch):
    monkeypatch.setattr(base, "DELIVERIES_LIMIT", 5)
    for n in range(8):
        assert remember(store, f"msg_{n}", START + n)
    assert ids_kept(store) == [f"msg_{n}" for n in range(3, 8)]
    assert not remember(store, "msg_7", START + 9)


def plan(store: SQLiteStore, sql: str, parameters: tuple) -> str:
    with sqlite3.connect(store.path) as connection:
        rows = connection.execute(f"EXPLAIN QUERY PLAN {sql}", parameters).fetchall()
    return " | ".join(row[-1] for row in rows)


def test_expiring_and_capping_ids_search_an_index_never_scan_the_table(store):
    expiry = plan(store, EXPIRE_DELIVERIES, (START,))
    assert "INDEX deliveries_by_time" in expiry
    cap = plan(store, CAP_DELIVERIES.format(order=store.delivery_order), (10,))
    assert "SCAN deliveries" not in cap
    assert "SEARCH deliveries USING INTEGER PRIMARY KEY" in cap
