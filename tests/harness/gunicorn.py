"""gunicorn serving prunehook (or a benchmark's app) on a loopback port: one way to start it.

Three ways, as operators and benchmarks start it: `How.GUNICORN` runs
`python -m gunicorn --config gunicorn.conf.py APP --bind ... [--workers N]`, `How.PROCFILE`
the Procfile's `web:` line and `How.MAKE_RUN` `make run`. Each starts in a session of its
own, so `stop()` ends the whole process group (make and its gunicorn, the master and its
workers) and nothing else.
"""

from __future__ import annotations

import enum
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.parts import REPO, free_port, http_call, wait_for

# a refusal must come within seconds; a master rebooting workers never exits at all
REFUSAL_BOUND_S = 60

VENV_BIN = REPO / ".venv" / "bin"
GUNICORN = (sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py")


class How(enum.StrEnum):
    GUNICORN = "gunicorn"
    PROCFILE = "procfile"
    MAKE_RUN = "make-run"
    SERVE = "serve"  # `prunehook serve`, of the virtualenv `bin_folder`


class _Own(enum.Enum):
    TOKEN = enum.auto()


OWN_TOKEN = _Own.TOKEN


def operator_environment(**variables: str) -> dict[str, str]:
    """The caller's environment without its PRUNEHOOK_*, GUNICORN_* and make variables, with
    the virtualenv first on PATH (as `make run` has it), plus `variables`."""
    clean = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PRUNEHOOK_", "GUNICORN_", "MAKE")) and name != "MFLAGS"
    }
    return clean | {"PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"} | variables


def procfile_command(port: int) -> list[str]:
    """The Procfile's `web:` line, with loopback for its 0.0.0.0 (tests bind loopback only)."""
    (line,) = [ln for ln in (REPO / "Procfile").read_text().splitlines() if ln.startswith("web:")]
    command = line.removeprefix("web:").strip().replace("0.0.0.0", "127.0.0.1")  # noqa: S104
    return ["sh", "-c", command.replace("$PORT", str(port))]


def command_for(
    how: How, port: int, app: str, workers: int | None, extra: Sequence[str], bin_folder: Path
) -> list[str]:
    if how is How.PROCFILE:
        return procfile_command(port)
    if how is How.MAKE_RUN:
        return ["make", "-s", "-C", str(REPO), "run", f"PORT={port}"]
    command = [*GUNICORN, app]
    if how is How.SERVE:
        command = [str(bin_folder / "prunehook"), "serve"]
    command += ["--bind", f"127.0.0.1:{port}"]
    if workers is not None:
        command += ["--workers", str(workers)]
    return [*command, *extra]


@dataclass
class Gunicorn:
    """A started gunicorn: its port, process (the group leader) and log."""

    port: int
    process: subprocess.Popen
    log_path: Path | None
    started: float  # time.monotonic() just before the process was started
    token: str | None = None  # what call() sends unless told otherwise

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base}/healthz", timeout=10) as response:
                return response.status == 200
        except OSError:
            return False

    def wait_until_serving(self, timeout: float = 60, interval: float = 0.05) -> float:
        """Wait for a 200 on /healthz; returns the seconds since the process was started."""
        wait_for(self._healthy, timeout, f"gunicorn (log: {self.log_path})", self.process, interval)
        return time.monotonic() - self.started

    def call(
        self,
        path: str,
        token: str | _Own | None = OWN_TOKEN,
        method: str = "POST",
        body: dict | None = None,
    ) -> tuple[int, dict]:
        sent = self.token if token is OWN_TOKEN else token
        return http_call(self.base + path, sent, method, body)

    def status(self) -> dict:
        return self.call("/status", None, "GET")[1]

    def raw(self, path: str, headers: dict | None = None) -> str:
        request = urllib.request.Request(self.base + path, headers=headers or {})
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read().decode()

    def stops_by_itself(self, what: str) -> None:
        """Wait up to REFUSAL_BOUND_S for the process to exit (a refusal at start); else stop
        it and fail naming `what`."""
        try:
            self.process.wait(REFUSAL_BOUND_S)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"{what}: still running {REFUSAL_BOUND_S}s later")

    def stop(self) -> None:
        """End the process group: SIGTERM, then SIGKILL if it is still there after 30 s."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(30)


def start_gunicorn(
    env: dict[str, str],
    *,
    how: How = How.GUNICORN,
    app: str = "wsgi:app",
    workers: int | None = None,
    extra: Sequence[str] = (),
    port: int | None = None,
    log_path: Path | None = None,
    token: str | None = None,
    cwd: Path = REPO,
    bin_folder: Path = VENV_BIN,
) -> Gunicorn:
    """Start gunicorn from the repository root (or `cwd`, another checkout: its app and
    gunicorn.conf.py) with exactly `env` (see operator_environment); it is not waited for:
    call wait_until_serving(), or wait for the process to refuse.
    `workers` and `extra` (more gunicorn options) apply to How.GUNICORN and How.SERVE, where
    `workers=None` keeps the configuration's. Without `log_path` the output is discarded."""
    port = port or free_port()
    command = command_for(how, port, app, workers, extra, bin_folder)
    output = log_path.open("wb") if log_path else subprocess.DEVNULL
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # stop() ends this group only
        )
    finally:
        if log_path:
            output.close()
    return Gunicorn(port, process, log_path, started, token)
