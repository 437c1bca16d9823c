"""The state in PostgreSQL (psycopg 3): one database shared by any number of replicas.

Every write is one short transaction; a claim locks the target's row (`FOR UPDATE`),
compares it with the state the service decided on and records the run, so replicas
start at most one prune per target. No transaction or lock is held while a prune runs.
Nothing depends on session state (no prepared statements, no session advisory locks),
so the store works through PgBouncer in transaction mode. The schema is versioned and
migrated under a transaction-level advisory lock, so replicas starting at once migrate
it once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from webhook.config import ConfigError
from webhook.core.decision import TargetState
from webhook.logs import PASSWORDS, mask_database_passwords
from webhook.store import StoreUnavailable
from webhook.store.base import Store

# any constant of our own: the key of the transaction-level lock that migrations take
MIGRATION_LOCK = 0x7072756E65  # "prune"
# how long a request waits for a connection: each thread has one, so a wait this long means
# the server is away, and a hook had better answer 503 soon (the sender retries)
POOL_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 3
# psycopg_pool 3.3 gives a reconnection up after this long, and then grows the pool again on
# the next request that finds it empty: so it keeps trying through an outage of any length.
# 0 gives up after a second attempt at once, so the first request after the database is
# back connects; a longer window backs off (1, 2, 4, ... s) and that request waits for the
# next attempt instead (tests/test_postgres_store.py).
RECONNECT_TIMEOUT_S = 0.0
URL_VARIABLE = "PRUNEHOOK_DATABASE_URL"

# the version of the databases this release writes: the `schema_version` table
SCHEMA_VERSION = 6


def _placeholders(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


def url_passwords(url: str) -> set[str]:
    """Each form the password in a URL (or conninfo string) may be quoted in: as written and
    decoded; empty when it carries none."""
    found: set[object] = set()
    # a URL libpq cannot read (check_url refuses it) still has its password as written
    with suppress(psycopg.Error):
        found.add(conninfo_to_dict(url).get("password"))
    try:
        written = urlsplit(url).password if "://" in url else None
    except ValueError:
        written = None
    found |= {written, unquote(written or "")}
    return {str(password) for password in found if password}


def check_url(url: str, variable: str = URL_VARIABLE) -> None:
    """Refuse a URL libpq cannot read, with a message that never repeats it: libpq's own
    quotes the part it could not read, which may be the password."""
    try:
        conninfo_to_dict(url)
        return
    except psycopg.Error:
        pass  # raised below, away from libpq's message
    raise ConfigError(
        {
            variable: [
                "PostgreSQL cannot read this URL (a password with @ : / % or spaces must be"
                " percent-encoded: %40 %3A %2F %25 %20); it is not shown here, as it may"
                " hold the password"
            ]
        }
    )


class PostgresStore(Store):
    """A small pool of connections per process, each checked before use."""

    version = SCHEMA_VERSION
    types: ClassVar[Mapping[str, str]] = {
        "int": "BIGINT",
        "float": "DOUBLE PRECISION",
        "bool": "BOOLEAN",
    }
    run_id = "BIGSERIAL PRIMARY KEY"
    lock = " FOR UPDATE"
    delivery_order = "seq"
    extra_columns: ClassVar[Mapping[str, str]] = {"deliveries": "seq BIGSERIAL"}
    extra_indexes = ("deliveries_by_seq ON deliveries (seq)",)
    database = "the database"

    def __init__(self, url: str, max_connections: int = 4, variable: str = URL_VARIABLE):
        # whatever libpq or the pool logs from now on, the password is masked in it
        mask_database_passwords(*url_passwords(url))
        check_url(url, variable)
        self.url = url
        self._pool: ConnectionPool | None = None
        self.max_connections = max(2, max_connections)
        self._pool_lock = threading.Lock()
        super().__init__()
        # the last state read of each target: what the skip path answers from while the
        # database is unreachable (a claim still needs it, and then answers 503)
        self._last_known: dict[str, TargetState] = {}

    def __repr__(self) -> str:
        return "PostgresStore(<url>)"  # the URL may carry a password

    def _connections(self) -> ConnectionPool:
        # opened on first use, in the process that uses it: never across a fork
        with self._pool_lock:
            if self._pool is None:
                self._pool = ConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=self.max_connections,
                    kwargs={
                        "autocommit": True,
                        "row_factory": dict_row,
                        # PgBouncer in transaction mode: no prepared statements
                        "prepare_threshold": None,
                        "connect_timeout": CONNECT_TIMEOUT_S,
                    },
                    check=ConnectionPool.check_connection,
                    timeout=POOL_TIMEOUT_S,
                    reconnect_timeout=RECONNECT_TIMEOUT_S,
                    open=False,
                    name="prunehook",
                )
                self._pool.open(wait=False)
            return self._pool

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    @contextmanager
    def _read(self) -> Iterator[psycopg.Connection[Any]]:
        """A checked connection of the pool, the schema current. It is in autocommit: one
        statement on it is a transaction of its own, which is all a read of one query needs
        (BEGIN and COMMIT would be two more round trips on the skip path)."""
        try:
            with self._connections().connection() as connection:
                self._migrate(connection)
                yield connection
        except PoolTimeout as error:
            raise StoreUnavailable(f"no connection to PostgreSQL: {error}") from error
        # down, or read-only: a URL still naming a demoted primary after a failover
        except (psycopg.OperationalError, psycopg.errors.ReadOnlySqlTransaction) as error:
            raise StoreUnavailable(f"PostgreSQL: {PASSWORDS.mask(str(error))}") from None

    @contextmanager
    def _write(self) -> Iterator[psycopg.Connection[Any]]:
        with self._read() as connection, connection.transaction():
            yield connection

    def _execute(
        self, connection: psycopg.Connection[Any], sql: str, parameters: Sequence[Any] = ()
    ) -> Any:
        return super()._execute(connection, _placeholders(sql), parameters)

    def clock(self) -> float:
        """The database's time: what replicas share, whatever their own clocks say."""
        with self._read() as connection:
            found = connection.execute(
                "SELECT extract(epoch FROM clock_timestamp()) AS now"
            ).fetchone()
            assert found is not None
            return float(found["now"])

    @contextmanager
    def _migration(self, connection: psycopg.Connection[Any]) -> Iterator[Any]:
        with connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
            )
            yield connection

    def _version(self, connection: psycopg.Connection[Any]) -> int:
        found = connection.execute("SELECT max(version) AS v FROM schema_version").fetchone()
        return int(found["v"]) if found and found["v"] is not None else 0

    def _set_version(self, connection: psycopg.Connection[Any]) -> None:
        connection.execute("DELETE FROM schema_version")
        connection.execute("INSERT INTO schema_version (version) VALUES (%s)", (self.version,))

    def read_state(self, target: str) -> TargetState:
        try:
            state = super().read_state(target)
        except StoreUnavailable:
            known = self._last_known.get(target)
            if known is None:
                raise
            return known
        self._last_known[target] = state
        return state


class DatabaseClock:
    """The database's time, read without a round trip per call: the offset between the
    local clock and the database's is measured now and then (and after the local clock
    stepped back), so every replica decides on the same clock, whatever its own says.

    While the database is away a measurement waits for the pool's timeout: after one fails
    the last offset is kept, and the next is tried only after a pause (on `monotonic`, which
    no step of the local clock moves) doubling from `retry_s` up to `retry_max_s`, by one
    thread at a time, so requests are not each held up by it."""

    retry_s = 1.0
    retry_max_s = 10.0

    def __init__(
        self,
        store: PostgresStore,
        local: Callable[[], float] = time.time,
        refresh_s: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.store = store
        self.local = local
        self.refresh_s = refresh_s
        self.monotonic = monotonic
        self.offset_s = 0.0
        self._measured_at: float | None = None
        # the failures in a row, and when (on `monotonic`) the next try may be made
        self._failures = 0
        self._retry_at: float | None = None
        self._measuring = threading.Lock()

    def _measure(self) -> None:
        before = self.local()
        database = self.store.clock()
        after = self.local()
        self.offset_s = database - (before + after) / 2
        self._measured_at = after

    def _due(self, now: float) -> bool:
        if self._retry_at is not None:
            return self.monotonic() >= self._retry_at
        measured = self._measured_at
        return measured is None or not (measured <= now < measured + self.refresh_s)

    def __call__(self) -> float:
        now = self.local()
        if self._due(now) and self._measuring.acquire(blocking=False):
            try:
                self._measure()
                self._failures, self._retry_at = 0, None
                now = self.local()
            except StoreUnavailable:
                # keep the last offset: the claim that follows answers 503 anyway
                self._failures += 1
                pause = self.retry_s * 2 ** min(self._failures - 1, 32)
                # from the try's end: the try itself took the pool's timeout
                self._retry_at = self.monotonic() + min(self.retry_max_s, pause)
            finally:
                self._measuring.release()
        return now + self.offset_s
