"""Cold start: process start to the first answered request, prunehook against bare Flask.

Serverless platforms start a process per burst, so this is gunicorn with one worker,
from exec to the first 200 on /healthz. Alternating rounds, medians. Also the import
time of each app. Run by hand:  .venv/bin/python bench/cold_start.py [--rounds 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

from common import POLL_S, REPO, median, start


def start_to_first_answer(app: str, env: dict[str, str]) -> float:
    served = start(app, env, workers=1)
    try:
        return served.wait_until_serving(30, POLL_S)
    finally:
        served.stop()


def import_seconds(module: str, env: dict[str, str]) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    path = {"PYTHONPATH": f"{REPO}:{REPO / 'bench'}"}
    output = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=os.environ | path | env,
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return float(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        env = {
            "PRUNEHOOK_TOKEN": "cold-start-token",
            "PRUNEHOOK_DB_PATH": f"{folder}/state.sqlite3",
            "PRUNEHOOK_INSTANCE_PATH": folder,
        }
        apps = {"bare Flask app": ("bare_app:app", "bare_app"), "prunehook": ("wsgi:app", "wsgi")}
        starts: dict[str, list[float]] = {name: [] for name in apps}
        imports: dict[str, list[float]] = {name: [] for name in apps}
        for _ in range(args.rounds):
            for name, (app, module) in apps.items():
                starts[name].append(start_to_first_answer(app, env))
                imports[name].append(import_seconds(module, env))
    baseline = median(starts["bare Flask app"])
    print("| app | start to first answer, median ms | ratio | import, median ms |")
    print("|---|---|---|---|")
    for name in apps:
        start, imported = median(starts[name]), median(imports[name])
        print(f"| {name} | {start * 1000:.0f} | {start / baseline:.2f}x | {imported * 1000:.0f} |")


if __name__ == "__main__":
    main()
