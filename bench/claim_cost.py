"""A claim, a finish and a skip's decision with PostgreSQL against SQLite, in one process.

Each backend is the app's own (`create_app`: its store, and under PostgreSQL the database's
clock), one target. Per round and backend, in wall time:
  skip    the service deciding a trigger inside the interval (`PruneService.claim`: read the
          state, decide `skipped`), as the skip path does on every request;
  claim   the same for a forced trigger, which claims a run (read, decide, one write
          transaction), as the first alert of a storm does;
  finish  recording that run's end (one write transaction), so the next claim may start.
Rounds alternate between the backends; medians are reported with each round's ratio.
SQLite keeps its file in a temporary folder on this machine's disk; PostgreSQL is a server
of its own on loopback (tests/harness/postgres.py) with fsync on, so both commit to disk.
Run by hand:  .venv/bin/python bench/claim_cost.py [--rounds 7] [--claims 300]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from common import TOKEN, median, parser_of, postgres_server

from tests.harness import succeeded_outcome
from webhook.config import Settings
from webhook.core.decision import Answer
from webhook.service import PruneService
from webhook.web.context import prunehook

MEASURES = ("skip", "claim", "finish")


def service_for(folder: Path, database_url: str) -> PruneService:
    settings = Settings.from_values(
        ssh_host="127.0.0.1",
        ssh_user="bench",
        ssh_key="unused: no prune runs",
        token=TOKEN,
        db_path=str(folder / "state.sqlite3"),
        database_url=database_url,
    )
    from webhook import create_app

    return prunehook(create_app(settings, instance_path=str(folder))).service


def one_round(service: PruneService, claims: int, skips: int) -> dict[str, float]:
    """Seconds per operation: `claims` claim + finish pairs, then `skips` skip decisions."""
    target = next(iter(service.fleet))
    clock: Callable[[], float] = time.perf_counter
    claimed = finished = 0.0
    for _ in range(claims):
        started = clock()
        result = service.claim(target, "bench", force=True)
        claimed += clock() - started
        assert result.answer == Answer.STARTED and result.run_id is not None, result
        started = clock()
        service.store.finish(target.name, result.run_id, succeeded_outcome(), service.clock())
        finished += clock() - started
    started = clock()
    for _ in range(skips):
        skipped = service.claim(target, "bench")
    elapsed = clock() - started
    assert skipped.answer == Answer.SKIPPED, skipped
    return {"skip": elapsed / skips, "claim": claimed / claims, "finish": finished / claims}


def main() -> None:
    parser = parser_of(__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--claims", type=int, default=300, help="claims per round and backend")
    parser.add_argument("--skips", type=int, default=3000, help="skips per round and backend")
    parser.add_argument(
        "--no-fsync", action="store_true", help="PostgreSQL as the tests run it (fsync off)"
    )
    args = parser.parse_args()
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (the app's log lines)
    results: dict[str, list[dict[str, float]]] = {"SQLite": [], "PostgreSQL": []}
    loads = [os.getloadavg()[0]]
    with ExitStack() as stack:
        database = stack.enter_context(postgres_server(fsync=not args.no_fsync))
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        (folder / "sqlite").mkdir()
        (folder / "postgres").mkdir()
        services = {
            "SQLite": service_for(folder / "sqlite", ""),
            "PostgreSQL": service_for(folder / "postgres", database.fresh_database()),
        }
        for service in services.values():
            stack.callback(service.store.close)
            one_round(service, 20, 200)  # warm: connections, schema, caches
        for _ in range(args.rounds):
            for name, service in services.items():
                results[name].append(one_round(service, args.claims, args.skips))
            loads.append(os.getloadavg()[0])
    print(
        "| operation | SQLite, median | PostgreSQL, median | ratio"
        " | per-round ratio: median (min-max) |"
    )
    print("|---|---|---|---|---|")
    for measure in MEASURES:
        sqlite = [r[measure] for r in results["SQLite"]]
        postgres = [r[measure] for r in results["PostgreSQL"]]
        paired = [p / s for p, s in zip(postgres, sqlite, strict=True)]
        print(
            f"| {measure} | {median(sqlite) * 1e6:.0f} µs | {median(postgres) * 1e6:.0f} µs"
            f" | {median(postgres) / median(sqlite):.2f}x"
            f" | {median(paired):.2f}x ({min(paired):.2f}-{max(paired):.2f}) |"
        )
    shown = " ".join(f"{load:.1f}" for load in loads)
    print(f"\nload average (1 min) at the start and after each round: {shown}")


if __name__ == "__main__":
    main()
