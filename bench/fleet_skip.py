"""The skip path in a fleet: an alert for one host of 200 targets against a fleet of one.

wrk at 64 connections posts the same watchdog alert (disk full on one host, whose last
prune is recent, so the answer is `skipped`) to servers that differ only in their fleet:
- the single host of the PRUNEHOOK_SSH_* variables, no targets file (as before fleets);
- a targets file with 1 target;
- a targets file with 200 targets (the alert names one of them; each has 100 runs).
A fourth server, 200 targets, takes `POST /hooks/cron` instead, a sweep in which all 200
skip: what a cron ping every minute costs a fleet (for reference; it is 200 decisions).
Rounds alternate between the servers; medians. gunicorn with the project's config.
Run by hand:  .venv/bin/python bench/fleet_skip.py [--seconds 10] [--rounds 5]
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import time
from pathlib import Path

from common import TOKEN, gunicorn, median, parser_of
from fleet_setup import fill_histories, names, service_env, write_targets_file
from skip_path import prunehook_in_skip_state

from tests.harness import keygen

ALERT = {"mount": "/var/lib/docker", "used_percent": 97.2, "status": "firing"}


def lua(body: dict | None) -> str:
    text = json.dumps(json.dumps(body)) if body is not None else '""'
    return (
        'wrk.method = "POST"\n'
        f'wrk.headers["Authorization"] = "Bearer {TOKEN}"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {text}\n"
    )


def wrk(url: str, seconds: int, connections: int, script: Path) -> dict[str, float]:
    output = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    found = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert found, output
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)", output, re.MULTILINE)
    assert p99, output
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "rps": float(found.group(1)),
        "p99_ms": float(p99.group(1)) * scale,
        "non_2xx": float(errors.group(1)) if errors else 0.0,
    }


def single_host(folder: Path) -> dict[str, str]:
    """The env target (no targets file), its last prune a minute ago."""
    return prunehook_in_skip_state(folder, ago_s=60)


def fleet(folder: Path, size: int) -> dict[str, str]:
    """A targets file of `size` targets, each with 100 runs, the last a minute ago."""
    targets = names(size)
    known_hosts = folder / "known_hosts"
    known_hosts.write_text("")
    targets_file = write_targets_file(
        folder / "targets.toml", targets, port=22, key_file=keygen(folder / "client_key"),
        known_hosts=known_hosts,
    )  # fmt: skip
    fill_histories(folder / "state.sqlite3", targets, runs=100, last_ts=time.time() - 60)
    return service_env(folder, targets_file)


def main() -> None:
    parser = parser_of(__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--targets", type=int, default=200)
    args = parser.parse_args()
    many = args.targets
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for name in ("single", "one", "many", "sweep"):
            (root / name).mkdir()
        watchdog = "/hooks/watchdog"
        setups = {
            "single host, no targets file (as before fleets)": (
                single_host(root / "single"), watchdog, ALERT | {"host": "127.0.0.1"},
            ),
            "targets file, 1 target": (
                fleet(root / "one", 1), watchdog, ALERT | {"host": "fleet-000"},
            ),
            f"targets file, {many} targets": (
                fleet(root / "many", many), watchdog, ALERT | {"host": names(many)[many // 2]},
            ),
            f"targets file, {many} targets, cron sweep (all skip)": (
                fleet(root / "sweep", many), "/hooks/cron", None,
            ),
        }  # fmt: skip
        servers = {}
        results: dict[str, list[dict[str, float]]] = {name: [] for name in setups}
        try:
            for number, (name, (env, path, body)) in enumerate(setups.items()):
                script = root / f"post-{number}.lua"
                script.write_text(lua(body))
                served = gunicorn("wsgi:app", env)
                servers[name] = (served, path, script)
                code, answer = served.call(path, token=TOKEN, body=body)
                assert code == 200, answer
                assert {r["decision"] for r in answer["results"]} == {"skipped"}, answer
            for _ in range(args.rounds):
                for name, (served, path, script) in servers.items():
                    url = f"{served.base}{path}"
                    results[name].append(wrk(url, args.seconds, args.connections, script))
        finally:
            for served, _, _ in servers.values():
                served.stop()
    baseline = median([r["rps"] for r in results[next(iter(results))]])
    print(f"wrk -c{args.connections}, {args.rounds} alternating rounds of {args.seconds} s")
    print()
    print("| server | req/s (median) | p99 ms (median) | ratio to the single host | non-2xx |")
    print("|---|---|---|---|---|")
    for name, runs in results.items():
        rps = median([r["rps"] for r in runs])
        p99 = median([r["p99_ms"] for r in runs])
        bad = sum(r["non_2xx"] for r in runs)
        print(f"| {name} | {rps:.0f} | {p99:.1f} | {rps / baseline:.2f}x | {bad:.0f} |")
    print()
    print("each round, req/s: " + "; ".join(
        f"{name.split(',')[0] if 'single' in name else name}: "
        + ", ".join(f"{r['rps']:.0f}" for r in runs)
        for name, runs in results.items()
    ))  # fmt: skip


if __name__ == "__main__":
    main()
