"""Where the skip path's CPU goes: each part of a skip taken out in turn, in the same process.

The cost of a part is the CPU per request with it, less without it, both measured inside a
whole request (a part timed alone in a tight loop runs from warm caches and looks cheaper).
Taking a part out breaks the feature: this only measures. Run by hand:
    .venv/bin/python bench/skip_parts.py [--rounds 5] [--requests 3000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

from skip_cost import cpu_us_per_request  # noqa: E402
from skip_path import prunehook_in_skip_state  # noqa: E402

_parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
_parser.add_argument("--rounds", type=int, default=5)
_parser.add_argument("--requests", type=int, default=3000, help="per round")


@contextmanager
def swapped(owner: object, name: str, value: object) -> Iterator[None]:
    kept = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, kept)


def parts(app) -> dict[str, Callable[[], object]]:
    """Each part, and how to take it out (a context manager)."""
    from webhook.web import hooks
    from webhook.web.context import EXTENSION

    service = app.extensions[EXTENSION].service
    state = service.store.read_state(service.fleet.targets[0].name)
    return {
        "reading the state (one SQLite SELECT)": lambda: swapped(
            service.store, "read_state", lambda name: state
        ),
        "the answer's schema dump": lambda: swapped(
            hooks, "answer_of", lambda result: {"decision": result.answer}
        ),
        "counting the decision (prometheus_client)": lambda: swapped(
            service.listeners, "decided", []
        ),
        "the answer's headers (request id, security)": lambda: swapped(
            app, "after_request_funcs", {}
        ),
    }


def main() -> None:
    args = _parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        os.environ.update(prunehook_in_skip_state(Path(folder)))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
        out, sys.stderr = sys.stdout, open(os.devnull, "w")  # noqa: SIM115 (the log lines)
        import webhook

        app = webhook.create_app()

        def measure() -> float:
            return cpu_us_per_request(app, args.rounds, args.requests)

        whole = []
        print("| part | CPU per skip it costs |\n|---|---|", file=out)
        for name, taken_out in parts(app).items():
            with_it = measure()
            with taken_out():
                without = measure()
            whole.append(with_it)
            print(f"| {name} | {with_it - without:.0f} µs |", file=out)
        print(f"\nthe whole skip: {statistics.median(whole):.0f} µs (median)", file=out)


if __name__ == "__main__":
    main()
