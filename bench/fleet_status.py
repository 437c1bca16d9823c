"""GET /status and /metrics of a fleet with full histories: time per request as targets grow.

For each fleet size (1, 50 and 200 targets by default), a fresh state database holds 100
finished runs per target (the most the store keeps), and gunicorn serves prunehook with the
project's config; one cron sweep (every target skips) gives /metrics its per-target
counters. Then, one request at a time over a keep-alive connection, alternating between the
paths: /healthz (the baseline: what any request costs), /status as JSON, /status as the
HTML fleet page, /status/<name> (one target with its recent runs) and /metrics. Reported:
gunicorn's own time per request (its access log's %(D)s: from the request read to the
answer written), median and p95, and the median as seen by the client.
Run by hand:  .venv/bin/python bench/fleet_status.py [--sizes 1 50 200] [--requests 200]
"""

from __future__ import annotations

import http.client
import statistics
import tempfile
import time
from pathlib import Path

from common import POLL_S, TOKEN, median, parser_of, start
from fleet_setup import fill_histories, names, service_env, write_targets_file

from tests.harness import http_call, keygen

PATHS = {
    "/healthz": ("/healthz", "application/json"),
    "/status (JSON)": ("/status", "application/json"),
    "/status (HTML)": ("/status", "text/html"),
    "/status/<name>": ("/status/fleet-000", "application/json"),
    "/metrics": ("/metrics", "text/plain"),
}
ACCESS = "bench-access"
# gunicorn's access log: our marker, the path, the Accept header, the request's time in
# microseconds and the status
ACCESS_FORMAT = f"{ACCESS} %(U)s %({{accept}}i)s %(D)s %(s)s"


def measure(port: int, requests: int) -> dict[str, list[float]]:
    """Client-side seconds per request, per path; the requests alternate between paths."""
    seen: dict[str, list[float]] = {name: [] for name in PATHS}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        for _ in range(requests):
            for name, (path, accept) in PATHS.items():
                started = time.perf_counter()
                connection.request("GET", path, headers={"Accept": accept})
                response = connection.getresponse()
                response.read()
                seen[name].append(time.perf_counter() - started)
                assert response.status == 200, (path, response.status)
    finally:
        connection.close()
    return seen


def server_times(lines: list[str]) -> dict[str, list[float]]:
    """gunicorn's request times (seconds) by the name in PATHS, from its access log."""
    names = {value: name for name, value in PATHS.items()}
    found: dict[str, list[float]] = {}
    for line in lines:
        if line.startswith(ACCESS):
            _, path, accept, micros, status = line.split()
            assert status == "200", line
            if (path, accept) in names:  # not the size probes after the measurement
                found.setdefault(names[path, accept], []).append(int(micros) / 1e6)
    return found


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def one_size(folder: Path, size: int, requests: int) -> tuple[dict, dict, int, int]:
    targets = names(size)
    key = keygen(folder / "client_key")  # read at start, never used: nothing is pruned
    known_hosts = folder / "known_hosts"
    known_hosts.write_text("")
    targets_file = write_targets_file(
        folder / "targets.toml", targets, port=22, key_file=key, known_hosts=known_hosts
    )
    fill_histories(folder / "state.sqlite3", targets, runs=100, last_ts=time.time() - 60)
    log = folder / "gunicorn.log"
    env = service_env(folder, targets_file)
    served = start("wsgi:app", env, extra=["--access-logformat", ACCESS_FORMAT], log=log)
    try:
        served.wait_until_serving(30, POLL_S)
        code, body = http_call(f"{served.base}/hooks/cron", TOKEN)
        assert code == 200 and {r["decision"] for r in body["results"]} == {"skipped"}, body
        measure(served.port, 5)  # warm up both workers' connections and caches
        skip = len(log.read_text(errors="replace").splitlines())
        client = measure(served.port, requests)
        status_bytes = len(served.raw("/status"))
        metrics_bytes = len(served.raw("/metrics"))
    finally:
        served.stop()
    measured = log.read_text(errors="replace").splitlines()[skip:]
    return client, server_times(measured), status_bytes, metrics_bytes


def main() -> None:
    parser = parser_of(__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 50, 200])
    parser.add_argument("--requests", type=int, default=200, help="requests per path and size")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for size in args.sizes:
            where = Path(folder) / f"fleet-{size}"
            where.mkdir()
            rows.append((size, *one_size(where, size, args.requests)))
    print(
        "| targets | path | server ms, median | server ms, p95 | client ms, median |"
        " ratio to /healthz (server median) | answer bytes |"
    )
    print("|---|---|---|---|---|---|---|")  # fmt: skip
    for size, client, server, status_bytes, metrics_bytes in rows:
        baseline = median(server["/healthz"])
        for name in PATHS:
            times = server[name]
            size_of = {"/status (JSON)": status_bytes, "/metrics": metrics_bytes}.get(name, "")
            print(
                f"| {size} | {name} | {median(times) * 1000:.2f} | {p95(times) * 1000:.2f} |"
                f" {median(client[name]) * 1000:.2f} | {median(times) / baseline:.1f}x |"
                f" {size_of} |"
            )


if __name__ == "__main__":
    main()
