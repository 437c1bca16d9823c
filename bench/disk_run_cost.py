"""What a disk-aware run adds to a plain age prune, against a real dockerd over real sshd.

Four ways to prune the same host, in alternating rounds, medians, each against the first
measured in the same rounds:
- the plain age prune of before issue 9: one connection, one command;
- a run without goals as the service makes it (df and `docker system df` before and after
  the age prune) on one connection, the versions already known (every run but a process's
  first of a target);
- the same, a process's first run of the target (the versions probed too);
- the same commands as the run without goals, a connection each (what sharing one saves).
The host is as deployed: OpenSSH's sshd on loopback with the key pinned to
contrib/prunehook-guard, a dockerd of its own (empty build cache, so the prunes themselves
cost little and the overhead shows). Run by hand as root:
    .venv/bin/python bench/disk_run_cost.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import median

from tests.harness import DockerEngine, SSHServer
from webhook.config import Settings
from webhook.core.command import SYSTEM_DF, build_df_command, build_prune_command
from webhook.remote.ssh import SSHRunner
from webhook.runs import RunSteps, run_stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        engine = DockerEngine(Path(folder) / "dockerd").start()
        server = SSHServer(Path(folder) / "sshd", engine.host, docker_root=engine.data_root)
        try:
            server.start()
            timings = measure(server, engine, args.rounds)
        finally:
            server.stop()
            engine.stop()
    baseline = median(timings["plain age prune (before)"])
    print("| run | commands | connections | median ms | ratio |")
    print("|---|---|---|---|---|")
    shape = {
        "plain age prune (before)": (1, 1),
        "disk-aware run, versions known": (5, 1),
        "disk-aware run, a process's first": (7, 1),
        "the same 5 commands, a connection each": (5, 5),
    }
    for name, values in timings.items():
        commands, connections = shape[name]
        ratio = median(values) / baseline
        ms = median(values) * 1000
        print(f"| {name} | {commands} | {connections} | {ms:.1f} | {ratio:.2f}x |")


def measure(server: SSHServer, engine: DockerEngine, rounds: int) -> dict[str, list[float]]:
    target = Settings.from_values(
        ssh_host="127.0.0.1",
        ssh_port=server.port,
        ssh_user="root",
        ssh_key_file=str(server.client_key),
        ssh_known_hosts=str(server.known_hosts),
        docker_root=str(engine.data_root),
    ).targets.env_target
    assert target is not None
    runner = SSHRunner()
    prune = build_prune_command(target.policy.until, target.policy.prune_all)
    probes = [build_df_command(target.policy.docker_root), SYSTEM_DF]
    _, known = run_stages(RunSteps(runner.session(target), target))  # versions, once
    timings: dict[str, list[float]] = {
        "plain age prune (before)": [],
        "disk-aware run, versions known": [],
        "disk-aware run, a process's first": [],
        "the same 5 commands, a connection each": [],
    }

    def plain() -> None:
        assert runner.execute(target, prune).rc == 0

    def staged() -> None:
        assert run_stages(RunSteps(runner.session(target), target, known=known))[0].ok

    def first() -> None:
        assert run_stages(RunSteps(runner.session(target), target))[0].ok

    def apart() -> None:
        for command in (*probes, prune, *probes):
            assert runner.execute(target, command).rc == 0

    ways = dict(zip(timings, (plain, staged, first, apart), strict=True))
    for _ in range(rounds):
        for name, way in ways.items():
            started = time.perf_counter()
            way()
            timings[name].append(time.perf_counter() - started)
    return timings


if __name__ == "__main__":
    main()
