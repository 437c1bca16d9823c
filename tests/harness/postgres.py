"""A PostgreSQL server of our own: `initdb` in a temporary folder, on a loopback TCP port.

PostgreSQL refuses to run as root. As root (as the suite runs here and in CI) the server
runs as the system user `prunehook-pg`, created when missing, through `runuser`; anyone
else runs it as themselves. Anyone on loopback may connect as the superuser without a
password (trust): it is a test server, reachable only from this machine.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.harness.parts import PartMissing, find_binary, free_port

SYSTEM_USER = "prunehook-pg"
# Debian keeps the server's programs out of PATH, one folder per major version
_DEBIAN_BINARIES = "/usr/lib/postgresql/*/bin"


def _major(folder: str) -> int:
    version = Path(folder).parent.name
    return int(version) if version.isdigit() else 0


def find_postgres_binary(name: str) -> str:
    """`name` (initdb, pg_ctl, ...) from PATH, else from Debian's newest server folder."""
    found = shutil.which(name)
    if found:
        return found
    for folder in sorted(glob.glob(_DEBIAN_BINARIES), key=_major, reverse=True):
        candidate = Path(folder) / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    raise PartMissing(f"PostgreSQL's {name} is not installed (Debian: postgresql)")


def _system_user() -> pwd.struct_passwd:
    """The unprivileged user the server runs as when we are root; created when missing."""
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        pass
    useradd = find_binary("useradd", "/usr/sbin/useradd")
    made = subprocess.run(
        [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            SYSTEM_USER,
        ],
        capture_output=True,
        text=True,
    )
    try:  # another run may have made it meanwhile (useradd then exits 9)
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise PartMissing(f"cannot create the user {SYSTEM_USER}: {made.stderr.strip()}") from None


class PostgresServer:
    """PostgreSQL on 127.0.0.1:`port`, its cluster in a temporary folder of its own.

    `start()` runs `initdb` the first time; `stop()` shuts the server down and keeps the
    cluster, so `start()` brings the same data back on the same port. `close()` stops it
    and removes the folder. `url` is what psycopg connects with.
    """

    def __init__(self, database: str = "prunehook", user: str = "prunehook"):
        self.database = database
        self.user = user
        self.port = free_port()
        self.root: Path | None = None
        self._as_user: list[str] = []

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    @property
    def data(self) -> Path:
        assert self.root is not None, "start() first"
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        assert self.root is not None, "start() first"
        return self.root / "postgres.log"

    def _run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """A PostgreSQL program as the server's user, in the cluster's folder, with no PG*
        variables of the caller's (PGHOST, PGDATA, ...) to redirect it."""
        env = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
        return subprocess.run(
            [*self._as_user, *argv],
            cwd=self.root,
            env=env | {"LC_ALL": "C"},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def _check(self, *argv: str) -> None:
        done = self._run(*argv)
        if done.returncode != 0:
            output = f"{done.stdout.strip()}\n{done.stderr.strip()}".strip()
            log = self.log_path.read_text()[-2000:] if self.log_path.exists() else ""
            raise RuntimeError(
                f"{Path(argv[0]).name} exited with {done.returncode}: {output}\n"
                f"server log {self.log_path}:\n{log}"
            )

    def _set_up(self) -> None:
        initdb = find_postgres_binary("initdb")
        find_postgres_binary("pg_ctl")
        find_postgres_binary("createdb")
        account = None
        if os.geteuid() == 0:
            runuser = find_binary("runuser", "/usr/sbin/runuser", "/sbin/runuser")
            account = _system_user()
            self._as_user = [runuser, "-u", SYSTEM_USER, "--"]
        # /tmp, not pytest's tmp_path: that sits under a folder only root may enter; and
        # short, since the unix socket's path must stay under 108 bytes
        self.root = Path(tempfile.mkdtemp(prefix="ph-pg-"))
        (self.root / "socket").mkdir()
        if account is not None:
            for path in (self.root, self.root / "socket"):
                os.chown(path, account.pw_uid, account.pw_gid)
        self._check(
            initdb,
            "--pgdata",
            str(self.data),
            "--username",
            self.user,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-locale",
            "--no-sync",
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# tests/harness/postgres.py\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.root / 'socket'}'\n"
                # commits still reach the kernel before they return, so a crash of the
                # server (stop("immediate")) loses none; only the machine's would
                "fsync = off\n"
            )

    def start(self) -> PostgresServer:
        """Start the server and wait until it accepts connections; the first time, make the
        cluster and the database."""
        first = self.root is None
        if first:
            self._set_up()
        pg_ctl = find_postgres_binary("pg_ctl")
        self._check(pg_ctl, "--pgdata", str(self.data), "--log", str(self.log_path), "-w", "start")
        if first:
            createdb = find_postgres_binary("createdb")
            host, port = str(self.root / "socket"), str(self.port)
            self._check(
                createdb, "--host", host, "--port", port, "--username", self.user, self.database
            )
        return self

    def fresh_database(self) -> str:
        """A new empty database on this server (one a test may fill and drop): its URL."""
        import uuid

        import psycopg

        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')  # a name of our own, not input
        return self.url.rsplit("/", 1)[0] + "/" + name

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.rsplit("/", 1)[1]
        if self.running():
            with psycopg.connect(self.url, autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def running(self) -> bool:
        if self.root is None:
            return False
        status = self._run(find_postgres_binary("pg_ctl"), "--pgdata", str(self.data), "status")
        return status.returncode == 0

    def stop(self, mode: str = "fast") -> None:
        """Shut the server down (pg_ctl's `fast`: open connections are ended; `immediate`:
        as a crash) and wait until it has; the cluster stays for `start()`."""
        if self.running():
            pg_ctl = find_postgres_binary("pg_ctl")
            self._check(pg_ctl, "--pgdata", str(self.data), "--mode", mode, "-w", "stop")

    def close(self) -> None:
        """Stop the server and remove its folder."""
        if self.root is None:
            return
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
