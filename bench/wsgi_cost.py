"""Microseconds per skip-path request, calling each WSGI app directly (no server, no client).

Shows the application's own cost against the bare Flask route, without gunicorn or wrk
on the same cores. Run by hand:  .venv/bin/python bench/wsgi_cost.py
"""

from __future__ import annotations

import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import TOKEN
from skip_path import prunehook_in_skip_state

N = int(sys.argv[1]) if len(sys.argv) > 1 else 5000


def environ() -> dict:
    return {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/hooks/cron", "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_AUTHORIZATION": f"Bearer {TOKEN}", "CONTENT_LENGTH": "0",
        "wsgi.input": io.BytesIO(b""), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
        "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
    }  # fmt: skip


def per_request_us(app) -> float:
    def start_response(status, headers, exc_info=None):
        assert status.startswith("200"), status

    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(N):
            b"".join(app(environ(), start_response))
        rounds.append((time.perf_counter() - started) / N * 1e6)
    return statistics.median(rounds)


with tempfile.TemporaryDirectory() as folder:
    os.environ.update(prunehook_in_skip_state(Path(folder)))
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (the JSON log lines are written, not kept)
    from bare_app import app as bare

    from webhook import create_app

    prunehook = create_app()
    bare_us, prunehook_us = per_request_us(bare), per_request_us(prunehook)
    print(f"bare Flask route:     {bare_us:7.1f} us/request")
    print(f"prunehook skip path:  {prunehook_us:7.1f} us/request  ({bare_us / prunehook_us:.2f}x)")
