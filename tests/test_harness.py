"""The harness's parts: the fleet (three real, distinct build hosts in front of one dockerd)
and PostgreSQL."""

from __future__ import annotations

import socket
import tomllib
from pathlib import Path

import paramiko
import psycopg
import pytest

from tests.harness import BuildFleet, PostgresServer
from tests.harness.parts import PORT_BLOCK, free_port, port_block


def ssh_run(
    address: str, port: int, key_file: str, known_hosts: str, command: str
) -> tuple[str, int]:
    """Run `command` on `address`:`port` as the targets file says to reach it; returns the
    host key it presented (checked against known_hosts) and the exit status."""
    client = paramiko.SSHClient()
    client.load_host_keys(known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(
            address,
            port,
            username="root",
            key_filename=key_file,
            look_for_keys=False,
            allow_agent=False,
            timeout=30,
        )
        transport = client.get_transport()
        assert transport is not None
        host_key = transport.get_remote_server_key().get_base64()
        _, stdout, _ = client.exec_command(command, timeout=30)
        return host_key, stdout.channel.recv_exit_status()
    finally:
        client.close()


def test_three_hosts_are_distinct_and_each_logs_only_what_reached_it(
    three_hosts: BuildFleet,
):
    targets_file = tomllib.loads(three_hosts.targets_file.read_text())
    defaults, targets = targets_file["defaults"], targets_file["targets"]
    assert sorted(targets) == ["build-1", "build-2", "build-3"]
    # each host on a loopback address of its own: a targets file refuses a shared one
    assert [t["host"] for t in targets.values()] == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]

    host_keys, statuses = set(), []
    for name, target in targets.items():
        address = three_hosts.address_of(name)
        assert (target["host"], target["port"]) == (address, three_hosts.hosts[name].port)
        assert target["aliases"] == [f"{name}.fleet.test"]
        host_key, status = ssh_run(
            target["host"],
            target["port"],
            defaults["key_file"],
            defaults["known_hosts"],
            f"echo ran-on-{name}",
        )
        host_keys.add(host_key)
        statuses.append(status)

    assert defaults["user"] == "root"
    assert len(host_keys) == 3
    assert all(status != 0 for status in statuses)  # the guard refuses anything but a prune
    assert {name: host.commands_run() for name, host in three_hosts.hosts.items()} == {
        name: [f"denied echo ran-on-{name}"] for name in targets
    }
    assert {host.docker_host for host in three_hosts.hosts.values()} == {three_hosts.docker_host}


def test_postgres_part_starts_stops_and_starts_again(postgres: PostgresServer):
    with psycopg.connect(postgres.url, connect_timeout=10) as connection:
        assert connection.execute("select 1").fetchone() == (1,)
        connection.execute("create table kept (value int)")
        connection.execute("insert into kept values (7)")
    try:
        postgres.stop()
        with pytest.raises(psycopg.OperationalError, match="refused"):
            psycopg.connect(postgres.url, connect_timeout=10)
    finally:
        postgres.start()
    with psycopg.connect(postgres.url, connect_timeout=10) as connection:
        assert connection.execute("select 1").fetchone() == (1,)
        assert connection.execute("select value from kept").fetchall() == [(7,)]
        connection.execute("drop table kept")


def test_each_worker_picks_ports_of_its_own_below_the_kernels_ephemeral_range():
    blocks = [set(port_block(f"gw{index}")) for index in range(12)] + [set(port_block(""))]
    low, _ = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    assert all(max(block) < low for block in blocks)
    assert all(not (a & b) for i, a in enumerate(blocks[:12]) for b in blocks[i + 1 : 12])
    assert blocks[-1] == blocks[0]


def test_a_port_something_holds_is_never_handed_out():
    held = []
    try:
        for _ in range(50):
            port = free_port()
            assert port not in [taken.getsockname()[1] for taken in held]
            server = socket.socket()
            server.bind(("127.0.0.1", port))
            server.listen()
            held.append(server)
        # the block wraps round to ports still held: they are passed over
        for _ in range(PORT_BLOCK):
            assert free_port() not in [taken.getsockname()[1] for taken in held]
    finally:
        for server in held:
            server.close()
