"""Cold start: process start to the first answered request, prunehook against bare Flask.

Serverless platforms start a process per burst, so this is gunicorn with one worker,
from exec to the first 200 on /healthz (and, with --postgres, /readyz, which needs the
database). Alternating rounds, medians. Also the import time of each app.
`--postgres` adds prunehook with its state in PostgreSQL (a server of its own on loopback,
tests/harness/postgres.py; the database's schema made before the rounds, as on a restart)
and tells which psycopg modules `import wsgi` loads with and without a database URL (the
driver must be imported only when one is set).
The package's bytecode is compiled before the rounds, as `pip install` compiles an installed
wheel's (and Flask's); `--from-source` instead removes it and sets PYTHONDONTWRITEBYTECODE, so
each start compiles the package again (a checkout run with that variable set).
Run by hand:  .venv/bin/python bench/cold_start.py [--rounds 10] [--postgres] [--from-source]
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack

from common import POLL_S, REPO, median, postgres_server, start

from tests.harness import http_call


def start_to_first_answer(app: str, env: dict[str, str], ready: bool = False) -> float:
    """Seconds from exec to the first 200 on /healthz, or with `ready` on /readyz."""
    served = start(app, env, workers=1)
    try:
        waited = served.wait_until_serving(30, POLL_S)
        if not ready:
            return waited
        while http_call(f"{served.base}/readyz", None, method="GET")[0] != 200:
            time.sleep(POLL_S)
        return time.monotonic() - served.started
    finally:
        served.stop()


def psycopg_imports(env: dict[str, str]) -> tuple[list[str], float]:
    """The psycopg modules in sys.modules after `import wsgi`, and the cumulative import time
    in seconds (-X importtime) of the outermost ones (psycopg, psycopg_pool)."""
    path = {"PYTHONPATH": f"{REPO}:{REPO / 'bench'}"}
    code = "import sys, wsgi; print(' '.join(m for m in sys.modules if m.startswith('psycopg')))"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], cwd=REPO,
        env=os.environ | path | env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    names = done.stdout.split()
    found = re.findall(r"^import time:\s+\d+ \|\s+(\d+) \|( *)(psycopg\S*)$", done.stderr, re.M)
    outermost = min((len(indent) for _, indent, _ in found), default=0)
    top = [int(cumulative) for cumulative, indent, _ in found if len(indent) == outermost]
    return names, sum(top) / 1e6


def import_seconds(module: str, env: dict[str, str]) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    path = {"PYTHONPATH": f"{REPO}:{REPO / 'bench'}"}
    output = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=os.environ | path | env,
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return float(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--postgres", action="store_true", help="also with PostgreSQL state")
    parser.add_argument("--from-source", action="store_true", help="compile at each start")
    args = parser.parse_args()
    if args.from_source:
        for cache in (REPO / "webhook").rglob("__pycache__"):
            shutil.rmtree(cache)
        os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        compileall.compile_dir(REPO / "webhook", quiet=1)
    loads = [os.getloadavg()[0]]
    with ExitStack() as stack:
        folder = stack.enter_context(tempfile.TemporaryDirectory())
        env = {
            "PRUNEHOOK_TOKEN": "cold-start-token-0123456789",
            "PRUNEHOOK_DB_PATH": f"{folder}/state.sqlite3",
            "PRUNEHOOK_INSTANCE_PATH": folder,
        }
        # name: (gunicorn app, module imported, environment, wait for /readyz too)
        apps = {
            "bare Flask app": ("bare_app:app", "bare_app", env, False),
            "prunehook": ("wsgi:app", "wsgi", env, False),
        }
        if args.postgres:
            server = stack.enter_context(postgres_server())
            pg_env = env | {"PRUNEHOOK_DATABASE_URL": server.fresh_database()}
            import_seconds("wsgi", pg_env)  # makes the schema: the rounds are restarts
            apps["prunehook on PostgreSQL"] = ("wsgi:app", "wsgi", pg_env, False)
            apps["prunehook on PostgreSQL, to /readyz"] = ("wsgi:app", "wsgi", pg_env, True)
            apps["prunehook on SQLite, to /readyz"] = ("wsgi:app", "wsgi", env, True)
        starts: dict[str, list[float]] = {name: [] for name in apps}
        imports: dict[str, list[float]] = {name: [] for name in apps}
        for _ in range(args.rounds):
            for name, (app, module, environment, ready) in apps.items():
                starts[name].append(start_to_first_answer(app, environment, ready))
                imports[name].append(import_seconds(module, environment))
            loads.append(os.getloadavg()[0])
        if args.postgres:
            without, _ = psycopg_imports(env)
            loaded, seconds = psycopg_imports(pg_env)
    baseline = median(starts["bare Flask app"])
    print("| app | start to first answer, median ms | ratio | import, median ms |")
    print("|---|---|---|---|")
    for name in apps:
        start, imported = median(starts[name]), median(imports[name])
        print(f"| {name} | {start * 1000:.0f} | {start / baseline:.2f}x | {imported * 1000:.0f} |")
    if args.postgres:
        print(f"\n`import wsgi` without a database URL loads {len(without)} psycopg modules")
        print(
            f"`import wsgi` with PRUNEHOOK_DATABASE_URL loads {len(loaded)} psycopg modules"
            f" ({', '.join(sorted(set(n.split('.')[0] for n in loaded)))}),"
            f" {seconds * 1000:.0f} ms of imports"
        )
    shown = " ".join(f"{load:.1f}" for load in loads)
    print(f"load average (1 min) at the start and after each round: {shown}")


if __name__ == "__main__":
    main()
