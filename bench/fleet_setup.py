"""Shared by the fleet benchmarks: loopback build hosts, a targets file naming many targets,
and filled histories.

A targets file refuses two targets sharing a host address (DESIGN.md, "A fleet of build
hosts": an alert naming it would prune both), so every target has a loopback address of its
own, 127.1.0.1, 127.1.0.2, ... (Linux routes all of 127.0.0.0/8 to lo; only loopback
addresses are ever a bench's target). One sshd listens on at most 16 addresses (OpenSSH's
MAX_LISTEN_SOCKS), so `LoopbackHosts` starts ceil(N / 16) real sshd, each on 16 of them.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import TOKEN

from tests.harness import SSHServer, keygen, record_run, succeeded_outcome
from tests.harness.ssh import MOST_ADDRESSES
from webhook.store.sqlite import SQLiteStore

FIRST_ADDRESS = ipaddress.ip_address("127.1.0.1")


def names(count: int, prefix: str = "fleet") -> list[str]:
    return [f"{prefix}-{index:03d}" for index in range(count)]


def address(index: int) -> str:
    """The loopback address of the `index`-th target: 127.1.0.1, 127.1.0.2, ..."""
    found = FIRST_ADDRESS + index
    if not found.is_loopback:
        raise ValueError(f"target {index} would not be on loopback ({found})")
    return str(found)


class LoopbackHosts:
    """`count` build hosts for a fleet bench, host i on `address(i)`: ceil(count / 16)
    OpenSSH sshd (tests/harness SSHServer: the client key pinned to the guard), each on up
    to 16 of those addresses with its own port and host key. Hosts are dealt round-robin
    (host i to sshd i mod S), so targets next to each other in a sweep reach different sshd
    and none of them meets its MaxStartups (10 handshakes at once) before the others.
    `hosts[i]` is (address, port); `known_hosts` trusts every one; `client_key` is shared.
    `docker` is the docker the guards run (a stand-in script may sleep first)."""

    def __init__(
        self,
        root: Path,
        count: int,
        docker_host: str,
        docker: str | None = None,
        **server_options,
    ):
        self.root = root
        self.count = count
        servers = max(1, math.ceil(count / MOST_ADDRESSES))
        root.mkdir(parents=True, exist_ok=True)
        self.client_key = keygen(root / "client_key")
        self.known_hosts = root / "known_hosts"
        self.servers = [
            SSHServer(
                root / f"sshd-{number}",
                docker_host,
                client_key=self.client_key,
                docker=docker,
                address=address(number),
                also_on=[address(i) for i in range(number + servers, count, servers)],
                **server_options,
            )
            for number in range(servers)
        ]
        self.hosts = [(address(i), self.servers[i % servers].port) for i in range(count)]

    def start(self) -> LoopbackHosts:
        try:
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(SSHServer.start, self.servers))
        except BaseException:
            self.stop()
            raise
        # one line per host, as `prunehook hosts add` writes them
        self.known_hosts.write_text(
            "".join(server.known_hosts.read_text() for server in self.servers)
        )
        return self

    def known_hosts_of(self, index: int) -> Path:
        """The known_hosts of host `index`'s own sshd alone (16 lines, not the fleet's)."""
        return self.servers[index % len(self.servers)].known_hosts

    def pids(self) -> list[int]:
        """The listening sshd processes (their sessions are their children)."""
        return [server.process.pid for server in self.servers if server.process]

    def commands_run(self) -> list[str]:
        return [line for server in self.servers for line in server.commands_run()]

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def write_targets_file(
    path: Path,
    targets: Sequence[str],
    *,
    key_file: Path,
    known_hosts: Path,
    port: int = 22,
    hosts: Sequence[tuple[str, int]] | None = None,
    defaults: dict[str, object] | None = None,
    per_target: Sequence[dict[str, object]] | None = None,
) -> Path:
    """A targets file (DESIGN.md, "A fleet of build hosts"): target i on `hosts[i]`
    (address, port), or without `hosts` on `address(i)` and `port` (a fleet never connected
    to); `defaults` adds keys to `[defaults]`, `per_target[i]` to target i's table."""
    if hosts is None:
        hosts = [(address(index), port) for index in range(len(targets))]
    if len(hosts) < len(targets):
        raise ValueError(f"{len(targets)} targets but {len(hosts)} hosts")
    lines = [
        "[defaults]",
        'user = "root"',
        f"key_file = {json.dumps(str(key_file))}",
        f"known_hosts = {json.dumps(str(known_hosts))}",
        *(f"{key} = {json.dumps(value)}" for key, value in (defaults or {}).items()),
    ]
    for index, (name, (host, host_port)) in enumerate(zip(targets, hosts, strict=False)):
        lines += ["", f"[targets.{name}]", f"host = {json.dumps(host)}", f"port = {host_port}"]
        own = per_target[index] if per_target else {}
        lines += [f"{key} = {json.dumps(value)}" for key, value in own.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def fill_histories(database: Path, targets: Sequence[str], runs: int, last_ts: float) -> None:
    """`runs` finished prunes per target, an hour apart, the last at `last_ts` (a history as
    full as the store keeps, when `runs` is 100)."""
    store = SQLiteStore(database)
    store.ensure_schema()
    # a benchmark's fixture, not a state to keep: no fsync per commit (20,000 runs in seconds)
    store._local.connection.execute("PRAGMA synchronous = OFF")
    try:
        for name in targets:
            for back in range(runs - 1, -1, -1):
                reclaimed = (1 + (back * 7919) % 50) * 10**8
                record_run(store, name, last_ts - back * 3600, succeeded_outcome(reclaimed))
    finally:
        store.close()


def service_env(folder: Path, targets_file: Path, **variables: str) -> dict[str, str]:
    return {
        "PRUNEHOOK_TOKEN": TOKEN,
        "PRUNEHOOK_DB_PATH": str(folder / "state.sqlite3"),
        "PRUNEHOOK_INSTANCE_PATH": str(folder),
        "PRUNEHOOK_TARGETS_FILE": str(targets_file),
        **variables,
    }
