"""Render GET /status with demo runs in headless Chromium and save docs/status.png.

    apt-get install chromium   # Debian's
    .venv/bin/python tools/screenshot_status.py [--out docs/status.png]
    .venv/bin/python tools/screenshot_status.py --fleet [--out docs/status-fleet.png]

One build host's page with its chart, or with --fleet the page of a demo fleet (hosts
failed, past their lease, pruning, never pruned and fine). The page is served on a loopback port
from a temporary state file; nothing is pruned and no host is connected to.
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
from webhook.core.disk import FreeGoal
from webhook.core.outcome import ErrorKind
from webhook.core.targets import PrunePolicy, SSHEndpoint, Target
from webhook.store import NewRun
from webhook.web.context import prunehook

HOUR = 3600.0
NOW = 1_795_600_000.0
DEMO_ERROR = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock"
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


DISK = 200_000_000_000
GOAL_FREE = 30_000_000_000  # min_free 15% of the disk
MAX_CACHE = 20_000_000_000


def measured(free_before: int, cache_before: int, reclaimed: int) -> dict:
    """A run's measurements: the cache shrinks by what Docker reclaimed, free space grows
    by it; stage 2 when the age prune left a goal missed (the demo's numbers are round)."""
    cache_after, free_after = cache_before - reclaimed, free_before + reclaimed
    return {
        "disk_size": DISK,
        "disk_free_before": free_before,
        "disk_free_after": free_after,
        "cache_before": cache_before,
        "cache_after": cache_after,
        "freed_bytes": reclaimed,
        "goal_met": free_after >= GOAL_FREE and cache_after <= MAX_CACHE,
        "free_short_bytes": max(0, GOAL_FREE - free_after),
        "cache_over_bytes": max(0, cache_after - MAX_CACHE),
        "docker_version": "28.2.2",
        "buildx_version": "0.24.0",
    }


def demo_app(folder: Path):
    settings = Settings.from_values(
        ssh_host="build-1.example", ssh_user="ci", ssh_key="unused", token="demo",  # noqa: S106
        db_path=str(folder / "demo.sqlite3"), max_cache=MAX_CACHE,
        min_free=FreeGoal(percent=15),
    )  # fmt: skip
    app = create_app(settings, clock=lambda: NOW, instance_path=str(folder))
    service = prunehook(app).service
    target = next(iter(service.fleet))
    free, cache = 41_000_000_000, 12_000_000_000
    for hours_ago, size, kind, trigger in DEMO_RUNS:
        if kind is None:
            free, cache = free - (cache // 3), cache + cache // 3  # builds since
            disk = measured(free, cache, size)
            free, cache = disk["disk_free_after"], disk["cache_after"]
            outcome = succeeded_outcome(size, duration_s=14.2, **disk)
        else:
            outcome = failed_outcome(kind, f"rc=1: {DEMO_ERROR}", duration_s=0.4)
        record_run(
            service.store, target.name, NOW - hours_ago * HOUR, outcome, trigger=trigger,
            command=service.command(target),
        )  # fmt: skip
    return app


DOCKER_DOWN = (ErrorKind.DOCKER_UNAVAILABLE, f"rc=1: {DEMO_ERROR}")
KEY_CHANGED = (ErrorKind.HOST_KEY_CHANGED, "host key of gpu-1.ci.example changed; not connecting")
# name, address, its runs oldest first: (hours ago, reclaimed bytes) or (hours ago, None,
# failure); "pruning" leaves a run in flight, "stalled" one that started an hour ago and
# whose lease expired (its worker died)
DEMO_FLEET = [
    ("build-1", "build-1.ci.example", [(29, 3_100_000_000), (17, 2_400_000_000), (5, 870_000_000)]),
    ("build-2", "build-2.ci.example", [(12, 5_600_000_000), (0.4, None, DOCKER_DOWN)]),
    ("build-3", "build-3.ci.example", [(7, 1_900_000_000), "pruning"]),
    ("arm-1", "10.20.0.11", [(25, 740_000_000), "stalled"]),
    ("gpu-1", "gpu-1.ci.example", [(1.5, None, KEY_CHANGED)]),
    ("build-4", "build-4.ci.example", [(5.2, 12_300_000_000)]),
    ("build-5", "build-5.ci.example", [(2, 0)]),
    ("build-6", "build-6.ci.example", []),
]  # fmt: skip


def demo_fleet_app(folder: Path):
    policy = PrunePolicy()
    targets = tuple(
        Target(name, SSHEndpoint(address, user="ci", key="unused"), policy)
        for name, address, _ in DEMO_FLEET
    )
    settings = Settings.from_values(
        token="demo", db_path=str(folder / "demo.sqlite3"),  # noqa: S106
        targets_file="demo-targets.toml", file_targets=targets,
    )  # fmt: skip
    app = create_app(settings, clock=lambda: NOW, instance_path=str(folder))
    service = prunehook(app).service
    for target, (_, _, history) in zip(targets, DEMO_FLEET, strict=True):
        command = service.command(target)
        for event in history:
            if event in ("pruning", "stalled"):
                started = NOW - (HOUR if event == "stalled" else 40)
                state = service.store.read_state(target.name)
                service.store.claim(
                    target.name, state, NewRun("cron", command), started, policy.lease_s
                )
                continue
            hours_ago, size, *failure = event
            if size is None:
                kind, error = failure[0]
                outcome = failed_outcome(kind, error, duration_s=0.4)
            else:
                # hosts fuller the more their last prune reclaimed (a demo's figures)
                disk = measured(60_000_000_000 - 4 * size, 18_000_000_000, size)
                outcome = succeeded_outcome(size, duration_s=14.2, **disk)
            record_run(service.store, target.name, NOW - hours_ago * HOUR, outcome, command=command)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleet", action="store_true", help="a demo fleet's page instead")
    parser.add_argument("--out", help="default: docs/status.png (--fleet: docs/status-fleet.png)")
    parser.add_argument("--chromium", default="chromium")
    args = parser.parse_args()
    out = args.out or ("docs/status-fleet.png" if args.fleet else "docs/status.png")
    build = demo_fleet_app if args.fleet else demo_app
    with tempfile.TemporaryDirectory() as folder:
        server = make_server("127.0.0.1", 0, build(Path(folder)))
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
                "--window-size=1280,720" if args.fleet else "--window-size=1000,1250",
                f"--screenshot={Path(out).resolve()}",
                url,
            ],
            check=True,
            timeout=120,
        )
        server.shutdown()
    print(f"saved {out}")


if __name__ == "__main__":
    main()
