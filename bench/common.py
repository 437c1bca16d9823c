"""Shared by the benchmarks: the repository on sys.path, gunicorn started the tests' way."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.harness import (  # noqa: E402
    Gunicorn,
    PostgresServer,
    operator_environment,
    start_gunicorn,
)

TOKEN = "bench-token-0123456789abcdef"  # noqa: S105 (a benchmark's loopback token)
# fine-grained: cold_start.py times start-up to the first answer with it
POLL_S = 0.005


def start(
    app: str, env: dict[str, str], workers: int | None = 2, extra: Sequence[str] = (), log=None
) -> Gunicorn:
    """Start `gunicorn app` with the project's gunicorn.conf.py, bench/ on PYTHONPATH (for
    bare_app); not waited for. `workers=None` keeps the config's."""
    bench = operator_environment(PYTHONPATH=str(REPO / "bench"))
    return start_gunicorn(bench | env, app=app, workers=workers, extra=extra, log_path=log)


def gunicorn(app: str, env: dict[str, str], workers: int = 2, log: Path | None = None) -> Gunicorn:
    """Start `gunicorn app` (see start) and wait until it answers."""
    return serving(start(app, env, workers, log=log))


def serving(served: Gunicorn) -> Gunicorn:
    """`served` once it answers; stopped when it never does."""
    try:
        served.wait_until_serving(30, POLL_S)
    except BaseException:
        served.stop()
        raise
    return served


def parser_of(doc: str) -> argparse.ArgumentParser:
    """A benchmark's options: its docstring's first line as the description, the rest as
    the epilog, kept as written."""
    return argparse.ArgumentParser(
        description=doc.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(doc.splitlines()[2:]),
    )


def median(values: list[float]) -> float:
    return statistics.median(values)


def group_cpu_s(group: int) -> float:
    """CPU seconds (user and system, every thread) used so far by the processes of process
    group `group` that are alive: a gunicorn started by `start` is the leader of its own."""
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        # after the command: state, ppid, pgrp, ... utime (14th field), stime (15th)
        if int(fields[2]) == group:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@contextmanager
def postgres_server(fsync: bool = True) -> Iterator[PostgresServer]:
    """A PostgreSQL of our own on loopback (tests/harness/postgres.py), removed afterwards.
    The harness turns fsync off for tests; a benchmark turns it back on unless asked not
    to, so that a commit costs what it costs on a real server (and SQLite's commits, which
    reach the disk, are compared with commits that do too)."""
    import psycopg

    server = PostgresServer()
    try:
        server.start()
        with psycopg.connect(server.url, autocommit=True) as connection:
            connection.execute(f"ALTER SYSTEM SET fsync = {'on' if fsync else 'off'}")
            connection.execute("SELECT pg_reload_conf()")
        yield server
    finally:
        server.close()


def proc_status(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            fields[key] = int(value.split()[0])
    return fields


def cpu_seconds(pid: int, children: bool = False) -> float:
    """CPU time of a process (all its threads); with `children`, plus that of the children
    it has waited for (sshd's sessions: the forked sshd, the guard and the docker client)."""
    stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = int(stat[11]) + int(stat[12])  # utime + stime
    if children:
        ticks += int(stat[13]) + int(stat[14])  # cutime + cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def worker_pids(master: int) -> list[int]:
    return [int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
