"""What every real part needs: the repository, binaries, loopback ports, waiting, HTTP."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parent.parent.parent
GUARD = REPO / "contrib" / "prunehook-guard"
# Debian's docker.io client still has BuildKit built in; newer clients need buildx for it
BUILD_CLIENT_CANDIDATES = ("/usr/bin/docker", "docker")

T = TypeVar("T")


class PartMissing(RuntimeError):
    """A real part (a binary, root) is not available here; the message says which."""


def find_binary(*candidates: str) -> str:
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return found
    raise PartMissing(f"none of {', '.join(candidates)} is installed")


def in_a_fresh_app(tmp_path: Path, then: str) -> str:
    """The last line `then` prints, run in a fresh interpreter right after create_app made
    `app` (SQLite state, `sys` imported): what a start loads, and what a use loads after."""
    check = (
        "from webhook import create_app; from webhook.config import Settings; import sys; "
        f"settings = Settings.from_values(token='t' * 32, db_path={str(tmp_path / 's.db')!r}); "
        f"app = create_app(settings, instance_path={str(tmp_path)!r}); {then}"
    )
    found = subprocess.run(
        [sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, check=True
    )
    return found.stdout.strip().splitlines()[-1]


# Below Linux's ephemeral range (32768-60999): a port the kernel hands out for bind(0) or an
# outgoing connection (ssh, psycopg, urllib) can be taken again between our probe and the
# server's bind. Each xdist worker draws from its own block, so two never pick the same one.
PORT_BLOCK = 1000
FIRST_PORT = 20000
_ports_given = itertools.count()


def port_block(worker: str) -> range:
    """The ports a pytest-xdist worker (`gw0`, `gw1`, ...; "" outside xdist) picks from."""
    index = int(worker.removeprefix("gw") or 0) % 12
    start = FIRST_PORT + index * PORT_BLOCK
    return range(start, start + PORT_BLOCK)


def free_port() -> int:
    """A loopback port no server of this run holds: each call moves on through this worker's
    block (wrapping), skipping ports something else already holds."""
    block = port_block(os.environ.get("PYTEST_XDIST_WORKER", ""))
    for _ in range(len(block)):
        port = block[next(_ports_given) % len(block)]
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise PartMissing(f"every loopback port in {block.start}-{block.stop - 1} is taken")


def wait_for(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    process: subprocess.Popen | None = None,
    interval: float = 0.05,
) -> T:
    """Poll `predicate` until it returns something true (returned), or raise after `timeout`;
    a `process` that exits meanwhile ends the wait at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {process.returncode}")
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"{what}: not ready within {timeout}s")


def http_call(
    url: str, token: str | None, method: str = "POST", body: dict | None = None
) -> tuple[int, dict]:
    """One JSON call to a loopback URL: (status, decoded body), errors included."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = json.dumps(body).encode() if body is not None else b"" if method == "POST" else None
    call = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(call, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())
