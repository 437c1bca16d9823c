"""A measure sweep: one cron ping measures a fleet of 1,000 watched targets (issue 17 item 6).

Every target is watched (`watch_interval_s = 60` under [defaults]) and its last prune is ten
minutes old (interval 6 h), so a cron ping starts no prune: it only queues a measure of each
(webhook/watch.py: one `claim_measures` transaction, then a pool of PRUNEHOOK_MAX_PARALLEL
threads, each measure one SSH session running `df -B1 ...` and `docker system df`). Every
target is a host of its own on loopback (127.1.0.1, 127.1.0.2, ...; a targets file refuses
two targets on one address) served by real OpenSSH sshd, one per 16 addresses
(fleet_setup.LoopbackHosts), the client key pinned to prunehook-guard. The host's own work
is off our cores: the guard's docker is a stand-in that sleeps `--host-delay` seconds (a
dockerd sizing its data elsewhere), then prints a `docker system df` table; `df` is the
real one. prunehook is served by gunicorn with the project's config (2 workers), SQLite.

Per PRUNEHOOK_MAX_PARALLEL value, on a fresh state database and a fresh server:
- one measure alone, `--baseline` times: `POST /hooks/cron?target=solo-N`, timed from the
  request to the sample's time (the service's clock when the probes ended), median;
- the sweep: one `POST /hooks/cron` concerning every target; (a) the time it takes to
  answer; (b) the time from the request to the last target's new sample, polling the
  store (read only) until each of the N has one, bounded, against the ideal
  ceil(N / parallel) x one measure; (c) prunehook's CPU (its process group: the master
  and both workers, /proc) per measure, and the host side's (the sshd listeners and
  their sessions: sshd, the guard in bash, df, the stand-in) beside it, since the hosts
  share our cores and set a floor of all that CPU / cores. The measures' warnings in the
  server's log are counted by kind (a failed measure says why).
`--known-hosts fleet` (the default) gives every target the one known_hosts of the whole
fleet, one line per host as `prunehook hosts add` writes it; `per-host` gives each target
the known_hosts of its own sshd (16 lines), to tell what the file's size costs.
Run by hand as root:  .venv/bin/python bench/measure_sweep.py [--targets 1000]
    [--parallel 8 32] [--host-delay 0.5] [--baseline 5] [--known-hosts fleet|per-host]
"""

from __future__ import annotations

import math
import os
import re
import sqlite3
import tempfile
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    TOKEN,
    cpu_seconds,
    group_cpu_s,
    gunicorn,
    median,
    parser_of,
    proc_status,
    worker_pids,
)
from fleet_setup import LoopbackHosts, fill_histories, names, service_env, write_targets_file

from tests.harness import Gunicorn, http_call

SOLO = "solo"
# what Docker 20.10 prints for an engine holding some build cache (the row prunehook reads)
SYSTEM_DF = """\
TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE
Images          3         1         412.3MB   301.2MB (73%)
Containers      1         0         2B        2B (100%)
Local Volumes   2         1         18.43MB   0B (0%)
Build Cache     20        0         10.49MB   10.49MB
"""


def stand_in_docker(path: Path, delay_s: float) -> str:
    """The guard's docker: sleeps as a host's engine works (no CPU of ours), then answers
    `docker system df`; anything else fails."""
    path.write_text(
        "#!/bin/sh\n"
        f"sleep {delay_s}\n"
        'if [ "$*" = "system df" ]; then\n'
        f"cat <<'EOF'\n{SYSTEM_DF}EOF\n"
        "  exit 0\nfi\n"
        'echo "stand-in docker: only system df, not: $*" >&2\nexit 1\n'
    )
    path.chmod(0o755)
    return str(path)


def watch_samples(database: Path, since: float, like: str) -> dict[str, tuple]:
    """target -> (ts, disk_free, cache) of its newest watch sample taken at `since` or later."""
    uri = f"file:{database}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=30)) as connection:
        rows = connection.execute(
            "SELECT target, ts, disk_free, cache FROM samples"
            " WHERE kind = 'watch' AND ts >= ? AND target LIKE ? ORDER BY ts",
            (since, like),
        ).fetchall()
    return {target: (ts, free, cache) for target, ts, free, cache in rows}


def wait_for_samples(
    database: Path, since: float, like: str, count: int, limit_s: float, poll_s: float
) -> dict[str, tuple]:
    deadline = time.monotonic() + limit_s
    found = watch_samples(database, since, like)
    while len(found) < count and time.monotonic() < deadline:
        time.sleep(poll_s)
        found = watch_samples(database, since, like)
    return found


@dataclass
class Round:
    parallel: int
    baseline_s: list[float]
    answer_s: float = 0.0
    decisions: Counter = field(default_factory=Counter)
    sweep_s: float = math.nan
    measured: int = 0
    failed: int = 0  # no disk figures
    no_cache: int = 0
    cpu_s: float = 0.0
    host_cpu_s: float = 0.0
    rss_before_kib: int = 0
    peak_rss_kib: int = 0
    threads_after: int = 0
    warnings: Counter = field(default_factory=Counter)
    load_before: float = 0.0
    load_after: float = 0.0


def measure_warnings(log: Path) -> Counter:
    """The server's warnings about measures, by kind (numbers and names left out)."""
    found: Counter = Counter()
    for line in log.read_text(errors="replace").splitlines():
        if "measure of" in line:
            what = line.partition("measure of ")[2].partition(" ")[2]
            found[re.sub(r"[0-9.]+", "N", what)[:120]] += 1
    return found


def one_round(
    folder: Path, hosts: LoopbackHosts, targets: int, parallel: int, solos: int, split: bool
) -> Round:
    fleet, solo = names(targets), names(solos, SOLO)
    targets_file = write_targets_file(
        folder / "targets.toml",
        solo + fleet,
        hosts=hosts.hosts,
        key_file=hosts.client_key,
        known_hosts=hosts.known_hosts,
        defaults={
            "watch_interval_s": 60,
            "retry_after_s": 86400,
            "docker_root": str(folder),
        },
        per_target=[
            {"known_hosts": str(hosts.known_hosts_of(index))} for index in range(solos + targets)
        ]
        if split
        else None,
    )
    database = folder / "state.sqlite3"
    # a prune ten minutes ago: not due (interval_s 6 h), so a ping only measures
    fill_histories(database, solo + fleet, runs=1, last_ts=time.time() - 600)
    env = service_env(folder, targets_file, PRUNEHOOK_MAX_PARALLEL=str(parallel))
    served: Gunicorn = gunicorn("wsgi:app", env, log=folder / "gunicorn.log")
    try:
        baseline = []
        for name in solo:
            sent = time.time()
            code, body = http_call(f"{served.base}/hooks/cron?target={name}", TOKEN)
            assert code in (200, 202) and body["results"][0]["decision"] == "skipped", body
            found = wait_for_samples(database, sent, name, 1, 60, 0.005)
            assert name in found and found[name][1] is not None, (name, found)
            baseline.append(found[name][0] - sent)
        result = Round(parallel, baseline, load_before=os.getloadavg()[0])
        pids = worker_pids(served.process.pid)
        result.rss_before_kib = max(proc_status(pid)["VmRSS"] for pid in pids)
        group = os.getpgid(served.process.pid)
        cpu_before = group_cpu_s(group)
        host_before = sum(cpu_seconds(pid, children=True) for pid in hosts.pids())
        sent = time.time()
        code, body = http_call(f"{served.base}/hooks/cron", TOKEN)
        result.answer_s = time.time() - sent
        assert code in (200, 202), body
        result.decisions = Counter(item["decision"] for item in body["results"])
        ideal = math.ceil(targets / parallel) * median(baseline)
        found = wait_for_samples(database, sent, "fleet-%", targets, 10 * ideal + 120, 0.2)
        result.cpu_s = group_cpu_s(group) - cpu_before
        result.host_cpu_s = sum(cpu_seconds(pid, children=True) for pid in hosts.pids())
        result.host_cpu_s -= host_before
        result.measured = len(found)
        if found:
            result.sweep_s = max(ts for ts, _, _ in found.values()) - sent
        result.failed = sum(free is None for _, free, _ in found.values())
        result.no_cache = sum(cache is None for _, _, cache in found.values())
        result.peak_rss_kib = max(proc_status(pid)["VmHWM"] for pid in pids)
        result.threads_after = max(proc_status(pid)["Threads"] for pid in pids)
        result.load_after = os.getloadavg()[0]
    finally:
        served.stop()
    result.warnings = measure_warnings(folder / "gunicorn.log")
    return result


def report(rounds: list[Round], targets: int, delay: float, known_hosts: str, ran: Counter) -> None:
    cpus = os.cpu_count() or 1
    print(
        f"{targets} targets, all watched and not due for a prune, {cpus} CPUs,"
        f" host delay {delay} s (the stand-in docker), known_hosts: {known_hosts};"
        f" the guards logged: {dict(ran)}"
    )
    print()
    print(
        "| parallel | one measure alone, median s | ideal: ceil(N/P) x one, s | sweep, s |"
        " ratio | ping answered in, s | ping's decisions | measured / failed / no cache |"
        " load (1 min) before → after |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for each in rounds:
        one = median(each.baseline_s)
        ideal = math.ceil(targets / each.parallel) * one
        print(
            f"| {each.parallel} | {one:.3f} | {ideal:.1f} | {each.sweep_s:.1f} |"
            f" {each.sweep_s / ideal:.2f}x | {each.answer_s:.2f} | {dict(each.decisions)} |"
            f" {each.measured} / {each.failed} / {each.no_cache} |"
            f" {each.load_before:.1f} → {each.load_after:.1f} |"
        )
    print()
    print(
        "| parallel | prunehook CPU, s | per measure, ms | host side CPU, s | per measure, ms |"
        " floor: all CPU / cores, s | sweep / max(ideal, floor) | worker RSS before → peak, MB |"
        " worker threads after |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for each in rounds:
        ideal = math.ceil(targets / each.parallel) * median(each.baseline_s)
        floor = (each.cpu_s + each.host_cpu_s) / cpus
        print(
            f"| {each.parallel} | {each.cpu_s:.1f} | {1000 * each.cpu_s / targets:.1f} |"
            f" {each.host_cpu_s:.1f} | {1000 * each.host_cpu_s / targets:.1f} | {floor:.1f} |"
            f" {each.sweep_s / max(ideal, floor):.2f}x |"
            f" {each.rss_before_kib / 1024:.1f} → {each.peak_rss_kib / 1024:.1f} |"
            f" {each.threads_after} |"
        )
    for each in rounds:
        if each.warnings:
            print(f"\nparallel {each.parallel}, measures' warnings: {dict(each.warnings)}")


def main() -> None:
    parser = parser_of(__doc__)
    parser.add_argument("--targets", type=int, default=1000, help="watched targets in the sweep")
    parser.add_argument(
        "--parallel", type=int, nargs="+", default=[8, 32], help="PRUNEHOOK_MAX_PARALLEL values"
    )
    parser.add_argument(
        "--host-delay", type=float, default=0.5,
        help="seconds the host's docker takes to answer `docker system df`",
    )  # fmt: skip
    parser.add_argument("--baseline", type=int, default=5, help="single measures timed per round")
    parser.add_argument(
        "--known-hosts", choices=("fleet", "per-host"), default="fleet",
        help="one known_hosts for the fleet, or each target its own sshd's",
    )  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        docker = stand_in_docker(root / "stand-in-docker", args.host_delay)
        count = args.baseline + args.targets
        # nothing listens at DOCKER_HOST: the stand-in never asks an engine
        hosts = LoopbackHosts(root / "hosts", count, "unix:///nonexistent", docker=docker)
        hosts.start()
        try:
            rounds = []
            for parallel in args.parallel:
                where = root / f"parallel-{parallel}"
                where.mkdir()
                split = args.known_hosts == "per-host"
                rounds.append(one_round(where, hosts, args.targets, parallel, args.baseline, split))
            ran = Counter(" ".join(line.split()[:3]) for line in hosts.commands_run())
        finally:
            hosts.stop()
    report(rounds, args.targets, args.host_delay, args.known_hosts, ran)


if __name__ == "__main__":
    main()
