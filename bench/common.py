"""Shared by the benchmarks: the repository on sys.path, gunicorn started the tests' way."""

from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.harness import Gunicorn, operator_environment, start_gunicorn  # noqa: E402

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
    served = start(app, env, workers, log=log)
    try:
        served.wait_until_serving(30, POLL_S)
    except BaseException:
        served.stop()
        raise
    return served


def median(values: list[float]) -> float:
    return statistics.median(values)
