"""SSH: paramiko connect + exec of a no-op against OpenSSH's `ssh` client, same sshd.

Both authenticate with the same key and verify the same known_hosts; the no-op is
`true`. Alternating rounds, medians. Run by hand as root:
    .venv/bin/python bench/ssh_connect.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from common import median

from tests.harness import SSHServer
from webhook.config import Settings
from webhook.remote.ssh import SSHRunner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        server = SSHServer(Path(folder), docker_host="unix:///nonexistent").start()
        server.authorize(guarded=False)
        try:
            target = Settings.from_values(
                ssh_host="127.0.0.1",
                ssh_port=server.port,
                ssh_user="root",
                ssh_key_file=str(server.client_key),
                ssh_known_hosts=str(server.known_hosts),
            ).targets.env_target
            runner = SSHRunner()
            openssh = [
                "ssh", "-p", str(server.port), "-i", str(server.client_key),
                "-o", f"UserKnownHostsFile={server.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "root@127.0.0.1", "true",
            ]  # fmt: skip
            timings: dict[str, list[float]] = {"OpenSSH ssh": [], "paramiko (prunehook)": []}
            for _ in range(args.rounds):
                started = time.perf_counter()
                subprocess.run(openssh, check=True, capture_output=True)
                timings["OpenSSH ssh"].append(time.perf_counter() - started)
                started = time.perf_counter()
                execution = runner.execute(target, "true")
                timings["paramiko (prunehook)"].append(time.perf_counter() - started)
                assert execution.rc == 0, execution
        finally:
            server.stop()
    baseline = median(timings["OpenSSH ssh"])
    print("| client | connect + exec `true`, median ms | ratio to ssh |")
    print("|---|---|---|")
    for name, values in timings.items():
        print(f"| {name} | {median(values) * 1000:.1f} | {median(values) / baseline:.2f}x |")


if __name__ == "__main__":
    main()
