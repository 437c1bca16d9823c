"""Slow clients against the service as `make run` starts it: how long does a trigger wait?

64 connections send a request head a byte a second (never finishing within the run);
meanwhile one legitimate `POST /hooks/cron` every half second, each timed from
connect to answer. `--worker-class gthread` measures gunicorn's stock worker for
comparison. Run by hand:  .venv/bin/python bench/slow_clients.py [--worker-class gthread]
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from common import POLL_S, TOKEN, median, start

SLOW_HEAD = b"POST /hooks/cron HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"x" * 200


def dribble(port: int, clients: int, seconds: float, opened: threading.Event) -> None:
    """`clients` connections each sending one byte of SLOW_HEAD a second, for `seconds`."""
    sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(clients)]
    opened.set()
    try:
        for offset in range(min(int(seconds), len(SLOW_HEAD))):
            for connection in sockets:
                with contextlib.suppress(OSError):  # closed by the server: that is the point
                    connection.sendall(SLOW_HEAD[offset : offset + 1])
            time.sleep(1)
    finally:
        for connection in sockets:
            connection.close()


def trigger(base: str) -> tuple[float, int]:
    call = urllib.request.Request(
        f"{base}/hooks/cron", data=b"", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    started = time.monotonic()
    with urllib.request.urlopen(call, timeout=120) as response:
        response.read()
        return time.monotonic() - started, response.status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker-class", help="override gunicorn.conf.py's worker_class")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        env = {
            "PRUNEHOOK_TOKEN": TOKEN,
            "PRUNEHOOK_DB_PATH": str(Path(folder) / "state.sqlite3"),
            "PRUNEHOOK_INSTANCE_PATH": folder,
        }
        extra = ["--worker-class", args.worker_class] if args.worker_class else []
        # as `make run` starts it: the config's workers and threads
        served = start("wsgi:app", env, workers=None, extra=extra)
        port, base = served.port, served.base
        try:
            served.wait_until_serving(30, POLL_S)
            quiet = [trigger(base)[0] for _ in range(5)]
            opened = threading.Event()
            slow = threading.Thread(
                target=dribble, args=(port, args.clients, args.seconds, opened), daemon=True
            )
            slow.start()
            opened.wait(30)
            time.sleep(2)  # let the slow clients reach the workers
            waits, codes = [], []
            while slow.is_alive() and len(waits) < args.seconds * 2:
                waited, code = trigger(base)
                waits.append(waited)
                codes.append(code)
                time.sleep(0.5)
            slow.join()
        finally:
            served.stop()
    print(f"worker class: {args.worker_class or 'gunicorn.conf.py'}, {args.clients} slow clients")
    print(f"  quiet:  median {median(quiet) * 1000:.1f} ms")
    print(
        f"  slow:   {len(waits)} triggers, answers {sorted(set(codes))}, "
        f"median {median(waits) * 1000:.1f} ms, max {max(waits) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    sys.exit(main())
