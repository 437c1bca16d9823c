"""A cron sweep of a fleet: 200 targets, PRUNEHOOK_MAX_PARALLEL=8, one real build host.

Every target is a host of its own on loopback (127.1.0.1, 127.1.0.2, ...: a targets file
refuses two targets on one address), served by OpenSSH's sshd (one per 16 addresses,
fleet_setup.LoopbackHosts), whose sessions reach ONE dockerd of our own through
prunehook-guard (tests/harness), so each prune is the real thing: an SSH handshake, the
guard, `docker builder prune` against the engine, the result recorded.
prunehook is served by gunicorn with the project's config (2 workers).

Each round, on a fresh state database: first the baseline, one prune at a time
(`POST /hooks/cron?target=solo-N&wait=1`, timed from request to answer); then the sweep,
one `POST /hooks/cron` concerning every target, timed from the request to the last run's
recorded end. The sweep is set against ceil(targets / parallel) x the baseline's median,
what perfect parallelism would take. Also: runs missed (not `ok`), the worker's peak RSS
(VmHWM) and CPU time, and SSH handshakes (= prunes) per second.

Here the 200 "hosts" share the two cores with the service: their CPU (sshd's sessions, the
guard, the docker client, dockerd) is reported beside the service's, and the floor it sets.
`--host-delay S` makes each prune wait S seconds on the host first (the guard's docker is a
script that sleeps, then runs the real client), as remote hosts do their work elsewhere.
Run by hand as root:  .venv/bin/python bench/fleet_sweep.py [--targets 200] [--rounds 1]
"""

from __future__ import annotations

import math
import os
import sqlite3
import statistics
import tempfile
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from common import TOKEN, cpu_seconds, gunicorn, median, parser_of, proc_status, worker_pids
from fleet_setup import LoopbackHosts, names, service_env, write_targets_file

from tests.harness import DockerEngine, Gunicorn, http_call

SOLO = "solo"


@dataclass
class Round:
    baseline_s: list[float]
    sweep_s: float = 0.0
    answer_s: float = 0.0
    started: int = 0
    ok: int = 0
    durations: list[float] = field(default_factory=list)
    peak_rss_kib: int = 0
    rss_before_kib: int = 0
    peak_threads: int = 0
    cpu_s: float = 0.0
    host_cpu_s: float = 0.0  # sshd's sessions and dockerd: the "hosts" share our cores
    load_before: float = 0.0
    load_after: float = 0.0


def finished_runs(database: Path) -> list[tuple[str, float, float]]:
    uri = f"file:{database}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as connection:
        return connection.execute(
            "SELECT result, finished_ts, duration_s FROM runs"
            " WHERE target LIKE 'fleet-%' AND result != 'running'"
        ).fetchall()


class Sampler(threading.Thread):
    """The workers' RSS and thread count every 50 ms while the sweep runs."""

    def __init__(self, pids: list[int]):
        super().__init__(daemon=True)
        self.pids = pids
        self.threads = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            for pid in self.pids:
                self.threads = max(self.threads, proc_status(pid)["Threads"])


def one_round(
    folder: Path, host: LoopbackHosts, engine: DockerEngine, targets: int, parallel: int, solos: int
) -> Round:
    fleet = names(targets)
    solo = names(solos, SOLO)
    targets_file = write_targets_file(
        folder / "targets.toml",
        solo + fleet,
        hosts=host.hosts,
        key_file=host.client_key,
        known_hosts=host.known_hosts,
        # a failed prune is then counted once, as missed, instead of retried
        defaults={"retry_after_s": 86400},
    )
    env = service_env(folder, targets_file, PRUNEHOOK_MAX_PARALLEL=str(parallel))
    served: Gunicorn = gunicorn("wsgi:app", env, log=folder / "gunicorn.log")
    try:
        baseline = []
        for name in solo:
            started = time.perf_counter()
            code, body = http_call(f"{served.base}/hooks/cron?target={name}&wait=1", TOKEN)
            baseline.append(time.perf_counter() - started)
            assert code == 200 and body["run"]["result"] == "ok", body
        result = Round(baseline, load_before=os.getloadavg()[0])
        pids = worker_pids(served.process.pid)
        result.rss_before_kib = max(proc_status(pid)["VmRSS"] for pid in pids)
        cpu_before = {pid: cpu_seconds(pid) for pid in pids}
        host_pids = [*host.pids(), engine.process.pid]
        host_before = sum(cpu_seconds(pid, children=True) for pid in host_pids)
        sampler = Sampler(pids)
        sampler.start()
        sent = time.time()
        code, body = http_call(f"{served.base}/hooks/cron", TOKEN)
        result.answer_s = time.time() - sent
        assert code == 202, body
        result.started = sum(item["decision"] == "started" for item in body["results"])
        deadline = time.monotonic() + 600
        runs = finished_runs(folder / "state.sqlite3")
        while len(runs) < result.started and time.monotonic() < deadline:
            time.sleep(0.1)
            runs = finished_runs(folder / "state.sqlite3")
        sampler.stop.set()
        sampler.join()
        result.sweep_s = max(finished for _, finished, _ in runs) - sent
        result.ok = sum(outcome == "ok" for outcome, _, _ in runs)
        result.durations = [duration for _, _, duration in runs if duration is not None]
        result.peak_rss_kib = max(proc_status(pid)["VmHWM"] for pid in pids)
        result.peak_threads = sampler.threads
        result.cpu_s = sum(cpu_seconds(pid) - cpu_before[pid] for pid in pids)
        result.host_cpu_s = sum(cpu_seconds(pid, children=True) for pid in host_pids) - host_before
        result.load_after = os.getloadavg()[0]
    finally:
        served.stop()
    return result


def delay_on_host(engine: DockerEngine, script: Path, seconds: float) -> str:
    """The guard's docker client: a script that sleeps, then runs the real one."""
    script.write_text(f'#!/bin/sh\nsleep {seconds}\nexec {engine.client} "$@"\n')
    script.chmod(0o755)
    return str(script)


def report(rounds: list[Round], targets: int, parallel: int, delay: float, ran: int) -> None:
    waves = math.ceil(targets / parallel)
    cpus = os.cpu_count() or 1
    print(f"{targets} targets, PRUNEHOOK_MAX_PARALLEL={parallel}, {cpus} CPUs,"
          f" host delay {delay} s; commands that reached the host: {ran}")  # fmt: skip
    print()
    print(
        "| round | one prune alone, median s | ideal: ceil(N/P) x one, s | sweep, s | ratio |"
        " answered in, s | started / ok | a prune in the sweep, median / max s |"
        " in flight, mean | prunes (SSH handshakes) / s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    for number, each in enumerate(rounds, 1):
        ideal = waves * median(each.baseline_s)
        print(
            f"| {number} | {median(each.baseline_s):.3f} | {ideal:.2f} | {each.sweep_s:.2f} |"
            f" {each.sweep_s / ideal:.2f}x | {each.answer_s:.2f} | {each.started} / {each.ok} |"
            f" {statistics.median(each.durations):.2f} / {max(each.durations):.2f} |"
            f" {sum(each.durations) / each.sweep_s:.1f} | {each.ok / each.sweep_s:.1f} |"
        )
    print()
    print(
        "| round | CPU s: service / host side (sshd sessions, guard, docker, dockerd) |"
        " CPU floor: all of it / cores, s | worker RSS before → peak (VmHWM), MB |"
        " worker threads, peak | load average (1 min) before → after |"
    )
    print("|---|---|---|---|---|---|")  # fmt: skip
    for number, each in enumerate(rounds, 1):
        floor = (each.cpu_s + each.host_cpu_s) / cpus
        print(
            f"| {number} | {each.cpu_s:.1f} / {each.host_cpu_s:.1f} | {floor:.1f} |"
            f" {each.rss_before_kib / 1024:.1f} → {each.peak_rss_kib / 1024:.1f} |"
            f" {each.peak_threads} | {each.load_before:.1f} → {each.load_after:.1f} |"
        )


def main() -> None:
    parser = parser_of(__doc__)
    parser.add_argument("--targets", type=int, default=200, help="targets in the sweep")
    parser.add_argument("--parallel", type=int, default=8, help="PRUNEHOOK_MAX_PARALLEL")
    parser.add_argument("--baseline", type=int, default=5, help="single prunes timed per round")
    parser.add_argument("--rounds", type=int, default=1, help="rounds, each on a fresh state")
    parser.add_argument(
        "--host-delay", type=float, default=0.0, help="seconds each prune waits on the host"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        engine = DockerEngine(root / "dockerd").start()
        try:
            docker = engine.client
            if args.host_delay:
                docker = delay_on_host(engine, root / "slow-docker", args.host_delay)
            count = args.targets + args.baseline
            host = LoopbackHosts(root / "hosts", count, engine.host, docker=docker).start()
            try:
                rounds = []
                for number in range(args.rounds):
                    where = root / f"round-{number}"
                    where.mkdir()
                    rounds.append(
                        one_round(where, host, engine, args.targets, args.parallel, args.baseline)
                    )
                ran = len(host.commands_run())
            finally:
                host.stop()
        finally:
            engine.stop()
    report(rounds, args.targets, args.parallel, args.host_delay, ran)


if __name__ == "__main__":
    main()
