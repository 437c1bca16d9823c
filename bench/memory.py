"""Memory: gunicorn worker RSS under skip-path load, and the peak while a prune prints
100,000 lines (only bounded tails are kept). Run by hand as root:
    .venv/bin/python bench/memory.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from common import gunicorn, proc_status, worker_pids
from skip_path import LUA, prunehook_in_skip_state

from tests.harness import SSHServer


def rss_under_load(folder: Path) -> list[tuple[str, int, int]]:
    rows = []
    script = folder / "post.lua"
    script.write_text(LUA)
    for name, app, env in (
        ("bare Flask app", "bare_app:app", {}),
        ("prunehook", "wsgi:app", prunehook_in_skip_state(folder)),
    ):
        served = gunicorn(app, env)
        try:
            subprocess.run(
                ["wrk", "-t2", "-c64", "-d10s", "-s", str(script), f"{served.base}/hooks/cron"],
                check=True, capture_output=True,
            )  # fmt: skip
            for pid in worker_pids(served.process.pid):
                status = proc_status(pid)
                rows.append((name, status["VmRSS"], status["VmHWM"]))
        finally:
            served.stop()
    return rows


HUNDRED_THOUSAND_LINES = "seq -f 'line %g of the prune output' 100000"
PEAK_CHILD = """
import resource, sys
from webhook.config import Settings
from webhook.remote.ssh import SSHRunner
settings = Settings.from_values(ssh_host="127.0.0.1", ssh_port=int(sys.argv[1]), ssh_user="root",
                    ssh_key_file=sys.argv[2], ssh_known_hosts=sys.argv[3])
execution = SSHRunner().execute(settings.targets.env_target, sys.argv[4])
assert execution.rc == 0, execution
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, len(execution.stdout_tail))
"""


def peak_while_printing(folder: Path) -> list[tuple[str, int, int]]:
    server = SSHServer(folder / "sshd", docker_host="unix:///nonexistent").start()
    server.authorize(guarded=False)
    rows = []
    try:
        for name, command in (
            ("a no-op", "true"),
            ("100,000 lines", "seq -f 'line %g of the prune output' 100000"),
        ):
            output = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    PEAK_CHILD,
                    str(server.port),
                    str(server.client_key),
                    str(server.known_hosts),
                    command,
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()
            rows.append((name, int(output[0]), int(output[1])))
    finally:
        server.stop()
    return rows


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        print("| worker | RSS after 10 s of wrk -c64, KiB | peak RSS (VmHWM), KiB |")
        print("|---|---|---|")
        for name, rss, peak in rss_under_load(Path(folder)):
            print(f"| {name} | {rss} | {peak} |")
        print()
        print("| one prune printing | peak RSS of the process, KiB | stdout kept, bytes |")
        print("|---|---|---|")
        for name, peak, kept in peak_while_printing(Path(folder)):
            print(f"| {name} | {peak} | {kept} |")


if __name__ == "__main__":
    main()
