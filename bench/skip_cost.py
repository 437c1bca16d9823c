"""CPU time per skip-path request of the WSGI app alone, against the bare route.

Process time, not wall time, so other jobs on the machine hardly move it; prometheus_client
in multiprocess mode, as under gunicorn. Run by hand, for this checkout or another (an older
commit exported with `git archive COMMIT | tar -x -C DIR`):
    .venv/bin/python bench/skip_cost.py [DIR] [--rounds 7] [--requests 4000]
(bench/wsgi_cost.py is the wall-time version, for this checkout only.)
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def environ(authorization: str) -> dict:
    return {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/hooks/cron", "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_AUTHORIZATION": authorization, "wsgi.input_terminated": True,
        "wsgi.input": io.BytesIO(b""), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
        "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
    }  # fmt: skip


def cpu_us_per_request(app, rounds: int, requests: int) -> float:
    """The median over `rounds` of the process's CPU per skip, each round `requests` long,
    with the token the prunehook of `prunehook_in_skip_state` is configured with."""
    authorization = f"Bearer {os.environ['PRUNEHOOK_TOKEN']}"

    def start_response(status, headers, exc_info=None):
        assert status.startswith("200"), status

    measured = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(requests):
            b"".join(app(environ(authorization), start_response))
        measured.append((time.process_time() - started) / requests * 1e6)
    return statistics.median(measured)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "tree",
        nargs="?",
        type=Path,
        default=Path(__file__).resolve().parent.parent,
        help="the checkout to measure (default: this one)",
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=4000, help="per round")
    args = parser.parse_args()
    tree = args.tree.resolve()
    if not (tree / "bench" / "skip_path.py").is_file():
        parser.error(f"{tree}: no bench/skip_path.py there")
    # the tree's own benchmark helpers and package, before this checkout's
    sys.path[:0] = [str(tree / "bench"), str(tree)]
    from skip_path import prunehook_in_skip_state

    with tempfile.TemporaryDirectory() as folder:
        os.environ.update(prunehook_in_skip_state(Path(folder)))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(Path(folder))
        out, sys.stderr = sys.stdout, open(os.devnull, "w")  # noqa: SIM115 (the log lines)
        from bare_app import app as bare

        import webhook

        assert Path(webhook.__file__).is_relative_to(tree), webhook.__file__
        prunehook = webhook.create_app()
        bare_us = cpu_us_per_request(bare, args.rounds, args.requests)
        prunehook_us = cpu_us_per_request(prunehook, args.rounds, args.requests)
        print(
            f"{tree}: bare route {bare_us:.1f} us, prunehook {prunehook_us:.1f} us,"
            f" extra {prunehook_us - bare_us:.1f} us",
            file=out,
        )


if __name__ == "__main__":
    main()
