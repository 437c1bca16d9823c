"""Render GET /status with demo runs in headless Chromium and save docs/status.png.

    apt-get install chromium   # Debian's
    .venv/bin/python tools/screenshot_status.py [--out docs/status.png]

The page is served on a loopback port from a temporary state file; nothing is pruned.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from werkzeug.serving import make_server

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness import failed_outcome, record_run, succeeded_outcome
from webhook import create_app
from webhook.config import Settings
from webhook.core.outcome import ErrorKind
from webhook.web.context import prunehook

HOUR = 3600.0
NOW = 1_795_600_000.0
DEMO_RUNS = [  # hours ago, reclaimed bytes (None = failed), error kind, trigger
    (60, 4_210_000_000, None, "alertmanager:prunehook"),
    (54, 650_000_000, None, "cron"),
    (48, 0, None, "cron"),
    (42, None, ErrorKind.DOCKER_UNAVAILABLE, "watchdog:build-1:/var/lib/docker"),
    (41.8, 11_050_000_000, None, "watchdog:build-1:/var/lib/docker"),
    (30, 1_200_000_000, None, "cron"),
    (18, 2_900_000_000, None, "alertmanager:prunehook"),
    (6, 870_000_000, None, "cron"),
]


def demo_app(folder: Path):
    settings = Settings(
        ssh_host="build-1.example", ssh_user="ci", ssh_key="unused", token="demo",  # noqa: S106
        db_path=str(folder / "demo.sqlite3"),
    )  # fmt: skip
    app = create_app(settings, clock=lambda: NOW, instance_path=str(folder))
    service = prunehook(app).service
    target = next(iter(service.fleet))
    for hours_ago, size, kind, trigger in DEMO_RUNS:
        if kind is None:
            outcome = succeeded_outcome(size, duration_s=14.2)
        else:
            error = "rc=1: Cannot connect to the Docker daemon at unix:///var/run/docker.sock"
            outcome = failed_outcome(kind, error, duration_s=0.4)
        record_run(
            service.store, target.name, NOW - hours_ago * HOUR, outcome, trigger=trigger,
            command=service.command(target),
        )  # fmt: skip
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/status.png")
    parser.add_argument("--chromium", default="chromium")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        server = make_server("127.0.0.1", 0, demo_app(Path(folder)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_port}/status"
        subprocess.run(
            [
                args.chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={folder}/chromium",
                "--hide-scrollbars",
                "--window-size=1000,900",
                f"--screenshot={Path(args.out).resolve()}",
                url,
            ],
            check=True,
            timeout=120,
        )
        server.shutdown()
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
