"""OpenSSH's sshd on loopback, its keys, and known_hosts: a build host as prunehook sees it."""

from __future__ import annotations

import ipaddress
import os
import selectors
import signal
import socket
import struct
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.harness.parts import (
    BUILD_CLIENT_CANDIDATES,
    GUARD,
    PartMissing,
    find_binary,
    free_port,
    wait_for,
)
from webhook.config import Settings
from webhook.core.targets import Target

# a host's default address; a fleet gives each of its hosts one of its own (127.0.0.2, ...)
LOOPBACK = "127.0.0.1"
# the most addresses one sshd listens on (OpenSSH's MAX_LISTEN_SOCKS)
MOST_ADDRESSES = 16


def loopback(index: int) -> str:
    """The `index`-th loopback address after 127.0.0.1 (0: 127.0.0.2), for a host of its own:
    Linux routes all of 127.0.0.0/8 to lo, and only loopback addresses are ever targets here."""
    return str(ipaddress.ip_address("127.0.0.2") + index)


def keygen(path: Path) -> Path:
    ssh_keygen = find_binary("ssh-keygen")
    subprocess.run(
        [ssh_keygen, "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
    )
    return path


def known_hosts_line(port: int, public_key: str, address: str = LOOPBACK) -> str:
    """A known_hosts line for a host on `address`:`port`; `public_key` is `type base64 ...`."""
    key_type, key_body = public_key.split()[:2]
    return f"[{address}]:{port} {key_type} {key_body}\n"


def _env(port: int, client_key: Path, known_hosts: Path, address: str) -> dict[str, str]:
    return {
        "PRUNEHOOK_SSH_HOST": address,
        "PRUNEHOOK_SSH_PORT": str(port),
        "PRUNEHOOK_SSH_USER": "root",
        "PRUNEHOOK_SSH_KEY_FILE": str(client_key),
        "PRUNEHOOK_SSH_KNOWN_HOSTS": str(known_hosts),
    }


def target_at(host: SSHKeys | SSHServer, **overrides: Any) -> Target:
    """The target of a prunehook configured for `host` as root (variables in
    `overrides`), with short timeouts for tests."""
    values = {
        "ssh_host": host.address,
        "ssh_port": host.port,
        "ssh_user": "root",
        "ssh_key_file": str(host.client_key),
        "ssh_known_hosts": str(host.known_hosts),
        "ssh_connect_timeout_s": 5,
        "timeout_s": 30,
    } | overrides
    target = Settings.from_values(**values).targets.env_target
    assert target is not None
    return target


def is_prune_line(line: str) -> bool:
    """A line of the guard's log about a prune (`allowed docker builder prune ...`)."""
    return line.partition(" ")[2].startswith("docker builder prune")


class SSHKeys:
    """A client key and a known_hosts entry for a host on a loopback port, and no sshd: for
    tests whose "host" is something else (a refused port, a silent listener, a paramiko
    server), so they need neither root nor OpenSSH's server."""

    address = LOOPBACK

    def __init__(self, root: Path, port: int | None = None):
        root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.client_key = keygen(root / "client_key")
        self.known_hosts = root / "known_hosts"
        self.trust(keygen(root / "host_key").with_suffix(".pub").read_text())

    def trust(self, public_key: str) -> None:
        """Make `public_key` (`type base64`) the host key known for this port."""
        self.known_hosts.write_text(known_hosts_line(self.port, public_key))

    def env(self) -> dict[str, str]:
        return _env(self.port, self.client_key, self.known_hosts, self.address)


class SSHServer:
    """OpenSSH's sshd on a loopback port of `address` (127.0.0.1, or another loopback address
    for a fleet whose hosts each need their own), with a generated host key and authorized_keys.
    `also_on` are more loopback addresses it answers on, with the same port and host key: one
    sshd stands for several targets, each with a host of its own (a targets file refuses two
    targets on one address); known_hosts trusts it on each.

    The client key is pinned to the prunehook guard, which logs every command it is
    asked to run, so tests can assert what really ran on the host. Sessions reach the
    Docker engine at `docker_host` (sshd's SetEnv DOCKER_HOST). `client_key` shares one
    client key between servers (a fleet); by default each server makes its own.
    """

    # the tests prune cache a second old, some with -a, some with stage 2 (disk goals);
    # guard_options=() keeps the guard's defaults
    GUARD_OPTIONS = ("--min-until", "1s", "--allow-all", "--allow-keep-storage")

    def __init__(
        self,
        root: Path,
        docker_host: str,
        guard_timeout: int = 60,
        guard_options: tuple[str, ...] = GUARD_OPTIONS,
        client_key: Path | None = None,
        docker: str | None = None,
        docker_root: Path | None = None,
        address: str = LOOPBACK,
        also_on: Sequence[str] = (),
    ):
        self.addresses = (address, *also_on)
        if not all(ipaddress.ip_address(each).is_loopback for each in self.addresses):
            raise ValueError(f"a test's sshd listens on loopback only, not {self.addresses}")
        if len(set(self.addresses)) != len(self.addresses) or len(self.addresses) > MOST_ADDRESSES:
            raise ValueError(f"at most {MOST_ADDRESSES} distinct addresses for one sshd")
        self.root = root
        self.address = address
        self.docker_host = docker_host
        self.guard_timeout = guard_timeout
        self.guard_options = guard_options
        self.shared_client_key = client_key
        # the docker the guard runs (default: the Debian client); a stand-in script may
        # print what another Docker prints
        self.docker = docker
        # what df measures for a run (PRUNEHOOK_DOCKER_ROOT): the engine's data root, or
        # without one this server's own folder, which exists on this machine
        self.docker_root = docker_root or root
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> SSHServer:
        sshd = find_binary("/usr/sbin/sshd", "sshd")
        find_binary("ssh-keygen")
        if os.geteuid() != 0:
            raise PartMissing("sshd on loopback is started as root here")
        root = self.root
        root.mkdir(parents=True, exist_ok=True)
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        self.host_key = keygen(root / "host_key")
        self.client_key = self.shared_client_key or keygen(root / "client_key")
        self.stranger_key = keygen(root / "stranger_key")
        self.guard_log = root / "guard.log"
        self.guard_log.touch()
        self.authorized_keys = root / "authorized_keys"
        self.authorize(guarded=True)
        self.known_hosts = root / "known_hosts"
        self.known_hosts.write_text(self.known_hosts_line(self.host_key))
        self.config = root / "sshd_config"
        self.config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    *(f"ListenAddress {each}" for each in self.addresses),
                    f"HostKey {self.host_key}",
                    f"AuthorizedKeysFile {self.authorized_keys}",
                    "StrictModes no",
                    "UsePAM no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    f"PidFile {root / 'sshd.pid'}",
                    f"SetEnv DOCKER_HOST={self.docker_host}",
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )
        self.log_path = root / "sshd.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sshd, "-D", "-e", "-f", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        wait_for(self._listening, 20, f"sshd (log: {self.log_path})", self.process)
        return self

    def _listening(self) -> bool:
        try:
            with socket.create_connection((self.address, self.port), timeout=1) as connection:
                return connection.recv(4).startswith(b"SSH-")
        except OSError:
            return False

    def known_hosts_line(self, host_key: Path) -> str:
        public_key = host_key.with_suffix(".pub").read_text()
        return "".join(known_hosts_line(self.port, public_key, each) for each in self.addresses)

    def authorize(self, guarded: bool) -> None:
        """Pin the client key to the guard (the recommended setup), or leave it unrestricted."""
        public = Path(f"{self.client_key}.pub").read_text().strip()
        docker = self.docker or find_binary(*BUILD_CLIENT_CANDIDATES)
        options = " ".join(self.guard_options)
        guard = f"bash {GUARD} --timeout {self.guard_timeout} --log {self.guard_log} {options}"
        guard += f" --docker {docker}"
        prefix = f'restrict,command="{guard}" ' if guarded else ""
        self.authorized_keys.write_text(prefix + public + "\n")

    def commands_run(self) -> list[str]:
        """Every line of the guard's log: `allowed <command>` or `denied <command>`."""
        return self.guard_log.read_text().splitlines()

    def prunes_run(self) -> list[str]:
        """The guard's lines of prunes, allowed or denied: its read-only probes left out."""
        return [line for line in self.commands_run() if is_prune_line(line)]

    def probes_run(self) -> list[str]:
        """The guard's lines of everything else (a run's probes, flask check's)."""
        return [line for line in self.commands_run() if not is_prune_line(line)]

    def env(self) -> dict[str, str]:
        """The PRUNEHOOK_* variables that point prunehook at this host."""
        own = {"PRUNEHOOK_DOCKER_ROOT": str(self.docker_root)}
        return _env(self.port, self.client_key, self.known_hosts, self.address) | own

    def drop_sessions(self) -> list[int]:
        """SIGKILL the server side of every open connection (the sshd processes the listener
        forked, and the commands they run), as a host that crashes or restarts sshd hard;
        the listener stays up."""
        assert self.process is not None
        killed = []
        for pid in _descendants(self.process.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            killed.append(pid)
        return killed

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def _descendants(ancestor: int) -> list[int]:
    """Every process below `ancestor` (from /proc), parents before their children."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [ancestor]
    while frontier:
        below = [pid for pid, parent in parents.items() if parent in frontier]
        found += below
        frontier = below
    return found


class ResettingRelay:
    """A TCP relay on a loopback port in front of `port`, for one connection at a time;
    `reset()` ends the connection with a TCP reset (RST) to the client, as a middlebox or a
    rebooted host does. One thread moves the bytes, so the reset closes sockets no other
    thread is reading (a socket closed under a blocked recv sends nothing)."""

    def __init__(self, port: int):
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connected = threading.Event()
        self._reset = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._relay, daemon=True)
        self._thread.start()

    def _relay(self) -> None:
        self.listener.settimeout(0.1)
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with client, socket.create_connection(("127.0.0.1", self.target)) as upstream:
                self.connected.set()
                self._pump(client, upstream)

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peer = {client: upstream, upstream: client}
        self._reset.clear()
        with selectors.DefaultSelector() as selector:
            for each in peer:
                selector.register(each, selectors.EVENT_READ)
            while not self._closed.is_set():
                if self._reset.is_set():
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return  # closing `client` now sends the RST
                for key, _ in selector.select(0.05):
                    try:
                        data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                        if not data:
                            return
                        peer[key.fileobj].sendall(data)  # type: ignore[index]
                    except OSError:
                        return

    def reset(self) -> None:
        """Reset the connection being relayed (the next one is relayed as usual)."""
        self._reset.set()

    def close(self) -> None:
        self._closed.set()
        self.listener.close()
        self._thread.join(10)
