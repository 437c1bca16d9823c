"""A storm across a fleet: thousands of alerts for 25 targets at once, across gunicorn workers.

The 25 targets of the targets file are 25 loopback addresses (127.0.0.2, ...: a targets file
refuses two targets on one address) of two real sshd (one listens on at most 16) in front of
the test dockerd; each target has its own `until` (1440m, 1441m, ...), so the guard logs,
which show every command that reached a host, also tell which target's prune it was.
"""

from __future__ import annotations

import http.client
import json
import random
import sqlite3
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

from tests.conftest import TOKEN
from tests.harness import SSHServer, keygen, wait_for
from tests.harness.ssh import MOST_ADDRESSES, loopback

TARGETS = 25
ALERTS = 3000
UNKNOWN = 100  # of the alerts: hosts that are no target
CLIENTS = 64
WORKERS = 3
# prunes at once per worker: 3 workers x 3 stay under sshd's MaxStartups (10 unauthenticated
# connections before it starts dropping new ones), so every prune reaches the guard
MAX_PARALLEL = 3


def until_of(index: int) -> str:
    return f"{1440 + index}m"


def storm_hosts(make_sshd, docker_host: str, client_key: Path) -> list[SSHServer]:
    """Sshd enough for a loopback address per target, sharing one client key."""
    addresses = [loopback(index) for index in range(TARGETS)]
    groups = [addresses[n : n + MOST_ADDRESSES] for n in range(0, TARGETS, MOST_ADDRESSES)]
    return [
        make_sshd(docker_host, client_key=client_key, address=group[0], also_on=group[1:])
        for group in groups
    ]


def targets_toml(hosts: list[SSHServer], client_key: Path, known_hosts: Path) -> str:
    lines = [
        "[defaults]",
        'user = "root"',
        f"key_file = {json.dumps(str(client_key))}",
        f"known_hosts = {json.dumps(str(known_hosts))}",
        # a failed prune (it should not fail) is then one run, not a retry inside the test
        "retry_after_s = 86400",
    ]
    endpoints = [(address, host.port) for host in hosts for address in host.addresses]
    for index, (address, port) in enumerate(endpoints):
        lines += [
            "",
            f"[targets.storm-{index:02d}]",
            f'host = "{address}"',
            f"port = {port}",
            f'until = "{until_of(index)}"',
            f'aliases = ["storm-{index:02d}.fleet.test"]',
        ]
    return "\n".join(lines) + "\n"


def host_values(rng: random.Random) -> list[str]:
    """Each alert's host: a target's name or alias as senders spell it, or an unknown host."""
    hosts = []
    for number in range(ALERTS - UNKNOWN):
        name = f"storm-{number % TARGETS:02d}"
        hosts.append(
            rng.choice(
                [name, name.upper(), f"{name}:9100", f"{name}.fleet.test", f"{name}.FLEET.test:22"]
            )
        )
    hosts += [f"stranger-{number}.fleet.test" for number in range(UNKNOWN)]
    rng.shuffle(hosts)
    return hosts


class Clients:
    """One keep-alive HTTP connection per client thread."""

    def __init__(self, port: int):
        self.port = port
        self.local = threading.local()
        self.opened: list[http.client.HTTPConnection] = []

    def post(self, host: str) -> tuple[int, dict]:
        body = json.dumps({"host": host, "mount": "/var/lib/docker", "used_percent": 97.0})
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        connection = getattr(self.local, "connection", None)
        if connection is None:
            connection = self.local.connection = http.client.HTTPConnection(
                "127.0.0.1", self.port, timeout=60
            )
            self.opened.append(connection)
        connection.request("POST", "/hooks/watchdog", body, headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())

    def close(self) -> None:
        for connection in self.opened:
            connection.close()


def runs_by_target(database: Path) -> dict[str, list[sqlite3.Row]]:
    with closing(sqlite3.connect(database)) as connection:
        connection.row_factory = sqlite3.Row
        rows = connection.execute("SELECT * FROM runs ORDER BY id").fetchall()
    found: dict[str, list[sqlite3.Row]] = {}
    for row in rows:
        found.setdefault(row["target"], []).append(row)
    return found


def test_a_storm_across_a_fleet_prunes_each_target_exactly_once(
    serve, make_sshd, docker_engine, tmp_path
):
    client_key = keygen(tmp_path / "client_key")
    servers = storm_hosts(make_sshd, docker_engine.host, client_key)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("".join(server.known_hosts.read_text() for server in servers))
    targets_file = tmp_path / "targets.toml"
    targets_file.write_text(targets_toml(servers, client_key, known_hosts))
    database = tmp_path / "state.sqlite3"
    served = serve(
        {
            "PRUNEHOOK_TOKEN": TOKEN,
            "PRUNEHOOK_DB_PATH": str(database),
            "PRUNEHOOK_TARGETS_FILE": str(targets_file),
            "PRUNEHOOK_MAX_PARALLEL": str(MAX_PARALLEL),
        },
        workers=WORKERS,
    )
    hosts = host_values(random.Random(8))
    clients = Clients(served.port)

    try:
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            answers = list(pool.map(clients.post, hosts))
    finally:
        clients.close()

    # 202 for the alert that started its target's prune, 200 for every other
    assert Counter(code for code, _ in answers) == Counter({202: TARGETS, 200: ALERTS - TARGETS})
    names = [f"storm-{index:02d}" for index in range(TARGETS)]
    started: Counter[str] = Counter()
    for sent, (_, body) in zip(hosts, answers, strict=True):
        (item,) = body["results"]
        if sent.startswith("stranger-"):
            assert (item["target"], item["decision"]) == (None, "unknown_target")
            continue
        # the alert's own target, whichever way the host was spelled
        assert item["target"] == sent.lower().split(".")[0].split(":")[0]
        assert item["decision"] in {"started", "busy", "skipped"}
        started[item["target"]] += item["decision"] == "started"
    assert started == Counter(dict.fromkeys(names, 1))

    def all_finished() -> dict | None:
        shown = served.status()
        done = all(t["in_flight"] is None and t["last_result"] for t in shown["targets"])
        return shown if done else None

    shown = wait_for(all_finished, 180, "every target's prune to finish")
    assert {t["name"]: t["last_result"] for t in shown["targets"]} == dict.fromkeys(names, "ok")
    runs = runs_by_target(database)
    assert sorted(runs) == names
    for name, (run,) in runs.items():  # exactly one run each, started by an alert for it
        assert run["result"] == "ok"
        assert run["trigger"].split(":")[1].lower().split(".")[0] == name
    # what reached the host: each target's own command, once
    index = {
        f"allowed docker builder prune -f --filter until={until_of(i)}": n
        for i, n in enumerate(names)
    }
    ran = Counter(index.get(line, line) for server in servers for line in server.prunes_run())
    assert ran == Counter(dict.fromkeys(names, 1))
