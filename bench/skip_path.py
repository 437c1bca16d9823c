"""The skip path under load: a trigger inside the interval, the common case in an alert storm.

wrk at 64 connections against POST /hooks/cron (authenticated, answered `skipped`)
and against a bare Flask route under the same gunicorn config, alternating rounds,
medians reported, with each round's ratio to the bare route of that round, and the CPU the
server's processes spent per request (which other jobs on the machine move far less than
requests per second). Run by hand as root:  .venv/bin/python bench/skip_path.py

`--compare-with DIR` also serves the prunehook found in DIR (an older commit, exported with
`git archive COMMIT | tar -x -C DIR`) in the same rounds, for before/after in one run; it may
be given more than once.
`--postgres` also serves this prunehook (and each DIR's) with its state in PostgreSQL (a server
of its own on loopback, tests/harness/postgres.py, fsync on), in the same rounds.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from common import TOKEN, group_cpu_s, gunicorn, median, postgres_server, serving

from tests.harness import (
    Gunicorn,
    operator_environment,
    record_run,
    start_gunicorn,
    succeeded_outcome,
)
from webhook.config import Settings
from webhook.store import Store
from webhook.store.sqlite import SQLiteStore

LUA = f"""
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer {TOKEN}"
"""


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(
    url: str, seconds: int, connections: int, script: Path, server: Gunicorn | None = None
) -> dict[str, float]:
    """One wrk run; with `server`, also the CPU its processes spent per request (µs), which
    other jobs on the machine move far less than requests per second."""
    group = os.getpgid(server.process.pid) if server else None
    cpu_before = group_cpu_s(group) if group else 0.0
    output = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", output, re.MULTILINE))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}
    if group:
        requests = int(re.search(r"(\d+) requests in", output).group(1))
        result["cpu_us"] = (group_cpu_s(group) - cpu_before) / max(requests, 1) * 1e6
    for name, text in percentiles.items():
        number, unit = re.match(r"([\d.]+)(\w+)", text).groups()
        result[f"p{name}_ms"] = _ms(number, unit)
    result["non_2xx"] = float(errors.group(1)) if errors else 0.0
    return result


def prunehook_in_skip_state(
    folder: Path, database_url: str = "", ago_s: float = 0.0
) -> dict[str, str]:
    """The environment of a prunehook whose one target was pruned `ago_s` ago (just now), its
    state in `folder` (SQLite) or in the PostgreSQL database at `database_url`."""
    settings = Settings.from_values(
        ssh_host="127.0.0.1", ssh_user="bench", ssh_key="unused", token=TOKEN
    )
    target = settings.targets.env_target
    assert target is not None
    env = {
        "PRUNEHOOK_SSH_HOST": "127.0.0.1",
        "PRUNEHOOK_SSH_USER": "bench",
        "PRUNEHOOK_SSH_KEY": "unused: the skip path never connects",
        "PRUNEHOOK_TOKEN": TOKEN,
        "PRUNEHOOK_DB_PATH": str(folder / "state.sqlite3"),
        "PRUNEHOOK_INSTANCE_PATH": str(folder),
    }
    if not database_url:
        store: Store = SQLiteStore(folder / "state.sqlite3")
    else:
        from webhook.store.postgres import PostgresStore

        store = PostgresStore(database_url)
        env["PRUNEHOOK_DATABASE_URL"] = database_url
    try:
        record_run(store, target.name, time.time() - ago_s, succeeded_outcome())
    finally:
        store.close()
    return env


def gunicorn_in(tree: Path, env: dict[str, str]) -> Gunicorn:
    """`gunicorn wsgi:app` of the checkout in `tree`: its wsgi.py, webhook and gunicorn.conf.py
    (run from `tree`, which comes first on sys.path), this virtualenv's packages."""
    environment = operator_environment(PYTHONPATH=str(tree)) | env
    return serving(start_gunicorn(environment, workers=2, cwd=tree))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--compare-with",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="another checkout of prunehook (repeat for more)",
    )
    parser.add_argument(
        "--postgres", action="store_true", help="also prunehook with its state in PostgreSQL"
    )
    args = parser.parse_args()
    for tree in args.compare_with:
        if not (tree / "wsgi.py").is_file():
            parser.error(f"--compare-with {tree}: no wsgi.py there")
    with ExitStack() as stack:
        database = stack.enter_context(postgres_server()) if args.postgres else None
        folder = stack.enter_context(tempfile.TemporaryDirectory())
        script = Path(folder) / "post.lua"
        script.write_text(LUA)
        env = prunehook_in_skip_state(Path(folder))
        servers: dict[str, Gunicorn] = {}
        try:
            servers["bare Flask route"] = gunicorn("bare_app:app", {})
            servers["prunehook skip path"] = gunicorn("wsgi:app", env)
            for number, tree in enumerate(args.compare_with):
                other = Path(folder) / f"other-{number}"
                other.mkdir()
                name = f"prunehook in {tree}"
                servers[name] = gunicorn_in(tree.resolve(), prunehook_in_skip_state(other))
            if database is not None:
                elsewhere = Path(folder) / "postgres"
                elsewhere.mkdir()
                pg_env = prunehook_in_skip_state(elsewhere, database.fresh_database())
                servers["prunehook skip path, PostgreSQL"] = gunicorn("wsgi:app", pg_env)
                for number, tree in enumerate(args.compare_with):
                    other = Path(folder) / f"other-postgres-{number}"
                    other.mkdir()
                    pg_env = prunehook_in_skip_state(other, database.fresh_database())
                    name = f"prunehook in {tree}, PostgreSQL"
                    servers[name] = gunicorn_in(tree.resolve(), pg_env)
            results: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
            loads = [os.getloadavg()[0]]
            for _ in range(args.rounds):
                for name, served in servers.items():
                    url = f"{served.base}/hooks/cron"
                    result = wrk(url, args.seconds, args.connections, script, served)
                    results[name].append(result)
                loads.append(os.getloadavg()[0])
        finally:
            for served in servers.values():
                served.stop()
    print_results(results, loads)


def print_results(results: dict[str, list[dict[str, float]]], loads: list[float]) -> None:
    """The medians, and each round's ratio to the bare route measured in that same round:
    their median and range say whether a difference stands out of the machine's noise."""
    bare = [r["rps"] for r in results["bare Flask route"]]
    baseline = median(bare)
    bare_cpu = [r["cpu_us"] for r in results["bare Flask route"]]
    print(
        "| server | req/s (median) | p50 ms | p99 ms | ratio of medians"
        " | per-round ratio: median (min-max) | server CPU µs/request (median)"
        " | bare's CPU / this CPU, per round: median (min-max) | non-2xx |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        rps = median([r["rps"] for r in runs])
        p50 = median([r["p50_ms"] for r in runs])
        p99 = median([r["p99_ms"] for r in runs])
        bad = sum(r["non_2xx"] for r in runs)
        paired = [r["rps"] / b for r, b in zip(runs, bare, strict=True)]
        spread = f"{median(paired):.2f}x ({min(paired):.2f}-{max(paired):.2f})"
        cpu = [b / r["cpu_us"] for r, b in zip(runs, bare_cpu, strict=True)]
        cpu_spread = f"{median(cpu):.2f}x ({min(cpu):.2f}-{max(cpu):.2f})"
        print(
            f"| {name} | {rps:.0f} | {p50:.2f} | {p99:.2f} | {rps / baseline:.2f}x | {spread}"
            f" | {median([r['cpu_us'] for r in runs]):.0f} | {cpu_spread} | {bad:.0f} |"
        )
    print()
    for name, runs in results.items():
        rounds = ", ".join(f"{r['rps']:.0f}" for r in runs)
        cpu_rounds = ", ".join(f"{r['cpu_us']:.0f}" for r in runs)
        print(f"{name}: req/s by round: {rounds}; server CPU µs/request: {cpu_rounds}")
    print(f"load average (1 min) at the start and after each round: {loads_text(loads)}")


def loads_text(loads: list[float]) -> str:
    return " ".join(f"{load:.1f}" for load in loads)


if __name__ == "__main__":
    main()
