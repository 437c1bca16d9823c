"""Shared by the fleet benchmarks: a targets file naming many targets, and filled histories."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from common import TOKEN

from tests.harness import record_run, succeeded_outcome
from webhook.store.sqlite import SQLiteStore


def names(count: int, prefix: str = "fleet") -> list[str]:
    return [f"{prefix}-{index:03d}" for index in range(count)]


def write_targets_file(
    path: Path,
    targets: Sequence[str],
    *,
    port: int,
    key_file: Path,
    known_hosts: Path,
    defaults: dict[str, object] | None = None,
) -> Path:
    """A targets file (DESIGN.md, "A fleet of build hosts"): every target is a name for the
    same loopback host and port; `defaults` adds keys to `[defaults]`."""
    lines = [
        "[defaults]",
        'user = "root"',
        f"port = {port}",
        f"key_file = {json.dumps(str(key_file))}",
        f"known_hosts = {json.dumps(str(known_hosts))}",
        *(f"{key} = {json.dumps(value)}" for key, value in (defaults or {}).items()),
    ]
    for name in targets:
        lines += ["", f"[targets.{name}]", 'host = "127.0.0.1"']
    path.write_text("\n".join(lines) + "\n")
    return path


def fill_histories(database: Path, targets: Sequence[str], runs: int, last_ts: float) -> None:
    """`runs` finished prunes per target, an hour apart, the last at `last_ts` (a history as
    full as the store keeps, when `runs` is 100)."""
    store = SQLiteStore(database)
    store.ensure_schema()
    # a benchmark's fixture, not a state to keep: no fsync per commit (20,000 runs in seconds)
    store._local.connection.execute("PRAGMA synchronous = OFF")
    try:
        for name in targets:
            for back in range(runs - 1, -1, -1):
                reclaimed = (1 + (back * 7919) % 50) * 10**8
                record_run(store, name, last_ts - back * 3600, succeeded_outcome(reclaimed))
    finally:
        store.close()


def service_env(folder: Path, targets_file: Path, **variables: str) -> dict[str, str]:
    return {
        "PRUNEHOOK_TOKEN": TOKEN,
        "PRUNEHOOK_DB_PATH": str(folder / "state.sqlite3"),
        "PRUNEHOOK_INSTANCE_PATH": str(folder),
        "PRUNEHOOK_TARGETS_FILE": str(targets_file),
        **variables,
    }
