"""An alert storm across two replicas on one PostgreSQL, against one instance.

3,000 watchdog alerts (disk full) for 10 targets of a targets file, sent by 64 client
threads over keep-alive connections, as fast as the servers answer. Per round, each setup
gets fresh state, so the first alert for each target starts its prune and the rest are
answered `skipped` or `busy`:
  one instance, SQLite        gunicorn with the project's config (2 workers x 8 threads);
  one instance, PostgreSQL    the same on a PostgreSQL database;
  two replicas, PostgreSQL    two such gunicorn instances on two ports, one database,
                              the alerts split between them (even to one, odd to the other).
Reported: the storm's time and requests/s, each answer's status and decision, the prunes
started per target (exactly one each is the contract) and the runs each database recorded.
Nothing listens where the targets are (127.1.0.N:9), so each prune fails at its connect and
is recorded `failed` (retried only after an hour): nothing leaves the machine, no sshd runs.
PostgreSQL is a server of its own on loopback (tests/harness/postgres.py), fsync on.
Run by hand:  .venv/bin/python bench/replica_storm.py [--rounds 3] [--alerts 3000]
"""

from __future__ import annotations

import http.client
import json
import os
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing
from pathlib import Path

from common import TOKEN, gunicorn, median, parser_of, postgres_server
from fleet_setup import address

from tests.harness import Gunicorn, PostgresServer, keygen, wait_for

TARGETS = [f"build-{n:02d}" for n in range(10)]
CLIENTS = 64
SETUPS = ("one instance, SQLite", "one instance, PostgreSQL", "two replicas, PostgreSQL")


def targets_file(folder: Path) -> Path:
    """10 targets on 127.1.0.1:9, 127.1.0.2:9, ... (a targets file refuses two targets on one
    address), where nothing listens: a prune fails at its connect."""
    key = folder / "client-key"
    if not key.exists():
        keygen(key)
    (folder / "known_hosts").touch()
    lines = [
        "[defaults]",
        'user = "bench"',
        f'key_file = "{key}"',
        f'known_hosts = "{folder / "known_hosts"}"',
        "retry_after_s = 3600",
    ]
    for index, name in enumerate(TARGETS):
        lines += ["", f"[targets.{name}]", f'host = "{address(index)}"', "port = 9"]
    path = folder / "targets.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Clients:
    """One keep-alive connection per client thread and server."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.opened: list[http.client.HTTPConnection] = []
        self.lock = threading.Lock()

    def post(self, port: int, host: str) -> tuple[int, str, float]:
        connections = self.local.__dict__.setdefault("by_port", {})
        connection = connections.get(port)
        if connection is None:
            connection = connections[port] = http.client.HTTPConnection(
                "127.0.0.1", port, timeout=60
            )
            with self.lock:
                self.opened.append(connection)
        body = json.dumps({"host": host, "mount": "/var/lib/docker", "used_percent": 97.0})
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        started = time.perf_counter()
        connection.request("POST", "/hooks/watchdog", body, headers)
        response = connection.getresponse()
        answer = json.loads(response.read())
        elapsed = time.perf_counter() - started
        started_here = [
            r["target"] for r in answer.get("results", []) if r["decision"] == "started"
        ]
        return response.status, answer.get("decision", "-") + "|" + ",".join(started_here), elapsed

    def close(self) -> None:
        for connection in self.opened:
            connection.close()


def storm(ports: list[int], alerts: int) -> dict:
    clients = Clients()
    calls = [(ports[n % len(ports)], TARGETS[n % len(TARGETS)]) for n in range(alerts)]
    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        answers = list(pool.map(lambda call: clients.post(*call), calls))
    elapsed = time.perf_counter() - began
    clients.close()
    latencies = sorted(a[2] for a in answers)
    started = Counter()
    for _, decision, _ in answers:
        for name in filter(None, decision.split("|")[1].split(",")):
            started[name] += 1
    return {
        "seconds": elapsed,
        "rps": alerts / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "status": Counter(a[0] for a in answers),
        "decision": Counter(a[1].split("|")[0] for a in answers),
        "started": started,
    }


def sqlite_runs(path: Path) -> Counter:
    with closing(sqlite3.connect(path)) as connection:
        rows = connection.execute("SELECT target, result FROM runs").fetchall()
    return Counter(rows)


def postgres_runs(url: str) -> Counter:
    import psycopg

    with psycopg.connect(url) as connection:
        rows = connection.execute("SELECT target, result FROM runs").fetchall()
    return Counter(rows)


def settled(read: Callable[[], Counter]) -> Counter:
    """The runs once none is `running` any more."""
    return wait_for(
        lambda: (found := read()) and all(result != "running" for _, result in found) and found,
        60,
        "every run to be recorded",
    )


def one_round(setup: str, folder: Path, database: PostgresServer, alerts: int) -> dict:
    env = {
        "PRUNEHOOK_TOKEN": TOKEN,
        "PRUNEHOOK_TARGETS_FILE": str(targets_file(folder)),
        "PRUNEHOOK_INSTANCE_PATH": str(folder),
        "PRUNEHOOK_DB_PATH": str(folder / "state.sqlite3"),
    }
    if "PostgreSQL" in setup:
        url = database.fresh_database()
        env["PRUNEHOOK_DATABASE_URL"] = url
        read: Callable[[], Counter] = lambda: postgres_runs(url)  # noqa: E731
    else:
        read = lambda: sqlite_runs(folder / "state.sqlite3")  # noqa: E731
    count = 2 if setup.startswith("two") else 1
    servers: list[Gunicorn] = []
    try:
        for _ in range(count):
            servers.append(gunicorn("wsgi:app", env))
        result = storm([s.port for s in servers], alerts)
        result["runs"] = settled(read)
    finally:
        for served in servers:
            served.stop()
    return result


def main() -> None:
    parser = parser_of(__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--alerts", type=int, default=3000)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {setup: [] for setup in SETUPS}
    loads = [os.getloadavg()[0]]
    with ExitStack() as stack:
        database = stack.enter_context(postgres_server())
        top = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        for number in range(args.rounds):
            for index, setup in enumerate(SETUPS):
                folder = top / f"{number}-{index}"
                folder.mkdir()
                results[setup].append(one_round(setup, folder, database, args.alerts))
            loads.append(os.getloadavg()[0])
    base = [r["seconds"] for r in results[SETUPS[0]]]
    print(
        "| setup | storm, median s | req/s | time vs one instance on SQLite, per round"
        " | p50 ms | p99 ms | answers | prunes started per target | runs recorded |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for setup, rounds in results.items():
        seconds = [r["seconds"] for r in rounds]
        paired = [s / b for s, b in zip(seconds, base, strict=True)]
        statuses: Counter = sum((r["status"] for r in rounds), Counter())
        decisions: Counter = sum((r["decision"] for r in rounds), Counter())
        per_target = sorted({count for r in rounds for count in r["started"].values()})
        targets_started = sorted({len(r["started"]) for r in rounds})
        runs = sorted({sum(r["runs"].values()) for r in rounds})
        answers = ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items()))
        answers += "; " + ", ".join(f"{d}: {n}" for d, n in sorted(decisions.items()))
        print(
            f"| {setup} | {median(seconds):.2f} | {median([r['rps'] for r in rounds]):.0f}"
            f" | {median(paired):.2f}x ({min(paired):.2f}-{max(paired):.2f})"
            f" | {median([r['p50_ms'] for r in rounds]):.1f}"
            f" | {median([r['p99_ms'] for r in rounds]):.1f}"
            f" | {answers} | {per_target} each, on {targets_started} targets"
            f" | {runs} per round |"
        )
    print(f"\n{args.rounds} rounds of {args.alerts} alerts for {len(TARGETS)} targets")
    for setup, rounds in results.items():
        shown = ", ".join(f"{r['seconds']:.2f}" for r in rounds)
        print(f"{setup}: s by round: {shown}")
    shown = " ".join(f"{load:.1f}" for load in loads)
    print(f"load average (1 min) at the start and after each round: {shown}")


if __name__ == "__main__":
    main()
