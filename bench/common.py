"""Shared by the benchmarks: start gunicorn on a loopback port and wait for it."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.hosts import free_port  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"  # noqa: S105 (a benchmark's loopback token)
GUNICORN = [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py"]


def gunicorn(app: str, env: dict[str, str], workers: int = 2, log: Path | None = None):
    """Start `gunicorn app` with the project's gunicorn.conf.py; returns (process, base url)."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PRUNEHOOK_")}
    process = subprocess.Popen(
        [*GUNICORN, app, "--bind", f"127.0.0.1:{port}", "--workers", str(workers)],
        cwd=REPO,
        env=clean | {"PYTHONPATH": str(REPO / "bench")} | env,
        stdout=(log or Path(os.devnull)).open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    wait_until_up(base, process)
    return process, base


def wait_until_up(base: str, process: subprocess.Popen, timeout: float = 30) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError("gunicorn exited")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except OSError:
            time.sleep(0.005)
    raise TimeoutError(base)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(30)


def median(values: list[float]) -> float:
    return statistics.median(values)
