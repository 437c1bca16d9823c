"""A fleet of build hosts on loopback, and the targets file that names them."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.harness.ssh import SSHServer, keygen, loopback

USER = "root"


class BuildFleet:
    """N real build hosts: N OpenSSH sshd, each on a loopback address of its own (127.0.0.2,
    127.0.0.3, ...; Linux routes all of 127.0.0.0/8 to lo), in front of ONE dockerd.

    How one dockerd serves several hosts, while each host still shows what ran on it:
    - every sshd's config carries `SetEnv DOCKER_HOST=<docker_host>`, so a session on any
      of them reaches the same engine (one engine is all the cache a test needs; N engines
      would cost N times the start-up and disk);
    - each sshd has its own directory with its own host key (so known_hosts tells the hosts
      apart as it would real machines), its own authorized_keys and its own guard log;
    - the one prunehook client key (the targets file's `[defaults] key_file`, as one
      deployed key for a whole fleet) is pinned, in each sshd's authorized_keys, to
      `prunehook-guard --log <that host's guard.log>`; a command that arrives through
      host A's sshd is therefore written to A's log only, and `hosts[name].commands_run()`
      is what ran "on" that host.
    The cache itself is shared: a prune through any host empties the one engine's cache, so
    a test of which host was pruned reads the guard logs, not the cache size.

    `targets_file` is a TOML file in the format of DESIGN.md "A fleet of build hosts":
    `[defaults]` with user, key_file and known_hosts (one file trusting every host key,
    `[127.0.0.N]:port` each), and one `[targets.NAME]` per host with its own address as
    `host`, its port and its aliases. A targets file refuses two targets on one address
    (an alert naming it would prune both), so the hosts cannot share 127.0.0.1: an alert
    may name a host by its name, its address or an alias, and concerns that host only.
    `aliases` defaults to ["NAME.fleet.test"].
    """

    def __init__(
        self,
        root: Path,
        docker_host: str,
        names: Sequence[str] = ("build-1", "build-2", "build-3"),
        aliases: Mapping[str, Sequence[str]] | None = None,
        docker_root: Path | None = None,
        **server_options,
    ):
        self.root = root
        self.docker_host = docker_host
        # the one engine's data root, which every host's runs measure; default: the fleet's
        # folder (a path that exists, for hosts that only test routing)
        self.docker_root = docker_root or root
        self.names = tuple(names)
        self.aliases = {name: [f"{name}.fleet.test"] for name in self.names} | dict(aliases or {})
        self.server_options = server_options
        self.hosts: dict[str, SSHServer] = {}
        self.targets_file = root / "targets.toml"
        self.known_hosts = root / "known_hosts"
        self.client_key = root / "client_key"

    def start(self) -> BuildFleet:
        self.root.mkdir(parents=True, exist_ok=True)
        keygen(self.client_key)
        try:
            for name in self.names:
                server = SSHServer(
                    self.root / name,
                    self.docker_host,
                    client_key=self.client_key,
                    address=self.address_of(name),
                    **self.server_options,
                )
                self.hosts[name] = server
                server.start()
        except BaseException:
            self.stop()
            raise
        self.known_hosts.write_text(
            "".join(server.known_hosts.read_text() for server in self.hosts.values())
        )
        self.targets_file.write_text(self.targets_toml())
        return self

    def address_of(self, name: str) -> str:
        """The loopback address of host `name`: 127.0.0.2 for the first, and so on."""
        return loopback(self.names.index(name))

    def targets_toml(self) -> str:
        # JSON strings are valid TOML basic strings for the paths and names used here
        lines = [
            "[defaults]",
            f"user = {json.dumps(USER)}",
            f"key_file = {json.dumps(str(self.client_key))}",
            f"known_hosts = {json.dumps(str(self.known_hosts))}",
            f"docker_root = {json.dumps(str(self.docker_root))}",
        ]
        for name, server in self.hosts.items():
            lines += [
                "",
                f"[targets.{name}]",
                f"host = {json.dumps(server.address)}",
                f"port = {server.port}",
                f"aliases = {json.dumps(list(self.aliases[name]))}",
            ]
        return "\n".join(lines) + "\n"

    def env(self) -> dict[str, str]:
        """The variable that points prunehook at this fleet."""
        return {"PRUNEHOOK_TARGETS_FILE": str(self.targets_file)}

    def stop(self) -> None:
        for server in self.hosts.values():
            server.stop()
