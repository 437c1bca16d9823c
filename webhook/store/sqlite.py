"""The state of each target and its recent runs, in one SQLite file (the embedded default).

Every write is one short `BEGIN IMMEDIATE` transaction, so concurrent requests in any
number of gunicorn workers serialize on it; a claim is a compare-and-set against the
state the service decided on. Reads take no lock (WAL).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar, NoReturn

from webhook.store import StoreUnavailable
from webhook.store.base import Store

BUSY_TIMEOUT_MS = 5000
# the version of the files this release writes: `PRAGMA user_version`
SCHEMA_VERSION = 8


class SQLiteStore(Store):
    """One SQLite connection per thread, kept open: opening one per call (connect, pragma,
    reading the schema) cost more than the skip path's whole query."""

    version = SCHEMA_VERSION
    types: ClassVar[Mapping[str, str]] = {"int": "INTEGER", "float": "REAL", "bool": "INTEGER"}
    run_id = "INTEGER PRIMARY KEY AUTOINCREMENT"

    def __init__(self, path: str | Path):
        self.path = self.database = str(path)
        self._local = threading.local()
        super().__init__()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    def _open(self) -> sqlite3.Connection:
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreUnavailable(f"cannot create the folder of {self.path}: {error}") from error
        try:
            # the timeout is SQLite's busy timeout: how long a write waits for the lock
            connection = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
            )
        except sqlite3.Error as error:
            raise StoreUnavailable(f"cannot open {self.path}: {error}") from error
        connection.row_factory = sqlite3.Row
        return connection

    def close(self) -> None:
        """Close this thread's connection (others close with their threads)."""
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            connection.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._open()
        try:
            self._migrate(connection)
            yield connection
        except sqlite3.DatabaseError as error:
            self._failed(error)

    def _failed(self, error: sqlite3.DatabaseError) -> NoReturn:
        # locked, read-only, unreadable or not a database: unavailable, so callers retry;
        # a constraint or SQL error is a bug and stays one
        if type(error) not in (sqlite3.OperationalError, sqlite3.DatabaseError):
            raise error
        self.close()  # the next call starts from a fresh connection
        raise StoreUnavailable(str(error)) from error

    @staticmethod
    @contextmanager
    def _immediate(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._read() as connection, self._immediate(connection):
            yield connection

    @contextmanager
    def _migration(self, connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        # the write transaction that also reads the version: workers starting at once
        # migrate the file exactly once
        connection.execute("PRAGMA journal_mode = WAL")
        with self._immediate(connection):
            yield connection

    def _version(self, connection: sqlite3.Connection) -> int:
        return int(connection.execute("PRAGMA user_version").fetchone()[0])

    def _set_version(self, connection: sqlite3.Connection) -> None:
        # PRAGMA takes no parameters; the value is our own integer
        connection.execute(f"PRAGMA user_version = {self.version}")

    def adopt_legacy_state(self, name: str, preferred_key: str | None = None) -> str | None:
        """Before targets had names, a row was keyed by its SSH endpoint. On upgrade the
        endpoint's row (or, when the user or port changed too, the most recent such row)
        becomes the named target's, with its history, so the interval survives the
        upgrade instead of pruning at once. Returns the old key, or None.
        """
        with self._write() as connection:
            if self._row(connection, name) is not None:
                return None
            legacy = connection.execute(
                "SELECT target FROM targets WHERE target LIKE '%@%'"
                " ORDER BY target = ? DESC, last_started_ts DESC LIMIT 1",
                (preferred_key,),
            ).fetchone()
            if legacy is None:
                return None
            old = str(legacy["target"])
            for table in ("targets", "runs"):
                self._update(connection, table, {"target": name}, {"target": old})
            return old
