"""Real servers for the tests: a Docker engine and an OpenSSH sshd on loopback.

Each is a plain class with start/stop so fixtures (conftest.py) and benchmarks
can share them. A missing binary skips the test, except under CI=true, where
it fails: CI must prove the real path.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GUARD = REPO / "contrib" / "prunehook-guard"
# Debian's docker.io client still has BuildKit built in; newer clients need buildx for it
BUILD_CLIENT_CANDIDATES = ("/usr/bin/docker", "docker")


def missing(what: str) -> None:
    """Skip for a missing part, but fail under CI, where every part must run."""
    message = f"{what} (make test installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {message}")
    pytest.skip(message)


def find_binary(*candidates: str) -> str:
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return found
    missing(f"none of {', '.join(candidates)} is installed")
    raise AssertionError("unreachable")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, process: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {process.returncode}")
        result = predicate()
        if result:
            return result
        time.sleep(0.05)
    raise TimeoutError(f"{what}: not ready within {timeout}s")


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str):
        super().__init__("localhost", timeout=30)
        self.socket_path = socket_path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self.socket_path)


class DockerEngine:
    """A dockerd of our own: its own data root, exec root and socket; no network setup."""

    def __init__(self, root: Path):
        self.root = root
        # unix socket paths are limited to ~108 bytes; keep the socket path short
        self.socket = Path("/tmp") / f"ph-docker-{secrets.token_hex(4)}.sock"
        self.host = f"unix://{self.socket}"
        self.process: subprocess.Popen | None = None
        self.log_path = root / "dockerd.log"

    def start(self) -> DockerEngine:
        if os.geteuid() != 0:
            missing("dockerd needs root")
        dockerd = find_binary("dockerd")
        self.client = find_binary(*BUILD_CLIENT_CANDIDATES)
        self.root.mkdir(parents=True, exist_ok=True)
        exec_root = Path("/tmp") / f"ph-dx-{secrets.token_hex(4)}"
        self.exec_root = exec_root
        with self.log_path.open("wb") as log:
            self.process = self._spawn(dockerd, exec_root, log)
        wait_for(self._answers, 60, f"dockerd (log: {self.log_path})", self.process)
        return self

    def _spawn(self, dockerd: str, exec_root: Path, log) -> subprocess.Popen:
        return subprocess.Popen(
            [
                dockerd,
                "--data-root",
                str(self.root / "data"),
                "--exec-root",
                str(exec_root),
                "--pidfile",
                str(self.root / "dockerd.pid"),
                "-H",
                self.host,
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def _answers(self) -> bool:
        try:
            return self.api("GET", "/_ping") == "OK"
        except OSError:
            return False

    def api(self, method: str, path: str):
        connection = _UnixHTTPConnection(str(self.socket))
        try:
            connection.request(method, path)
            body = connection.getresponse().read().decode()
        finally:
            connection.close()
        try:
            return json.loads(body)
        except json.JSONDecodeError:
            return body

    def build_cache_bytes(self) -> int:
        usage = self.api("GET", "/system/df")
        return sum(record.get("Size", 0) for record in usage.get("BuildCache") or [])

    def make_build_cache(self, context: Path, size: int) -> None:
        """Real BuildKit cache: `docker build` of a FROM scratch image with fresh random data."""
        context.mkdir(parents=True, exist_ok=True)
        (context / "blob.bin").write_bytes(os.urandom(size))
        (context / "Dockerfile").write_text("FROM scratch\nCOPY blob.bin /blob.bin\n")
        subprocess.run(
            [self.client, "build", "-q", str(context)],
            env={**os.environ, "DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "1"},
            check=True,
            capture_output=True,
            timeout=120,
        )

    @contextlib.contextmanager
    def paused(self, seconds: float | None = None) -> Iterator[None]:
        """A hung daemon, for real: dockerd stopped with SIGSTOP, resumed on exit (or after
        `seconds`, from a timer)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        timer = None
        if seconds is not None:
            timer = threading.Timer(seconds, self.process.send_signal, (signal.SIGCONT,))
            timer.start()
        try:
            yield
        finally:
            if timer is not None:
                timer.cancel()
            self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.socket.unlink(missing_ok=True)
        shutil.rmtree(self.exec_root, ignore_errors=True)


def keygen(path: Path) -> Path:
    ssh_keygen = find_binary("ssh-keygen")
    subprocess.run(
        [ssh_keygen, "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
    )
    return path


def known_hosts_line(port: int, public_key: str) -> str:
    """A known_hosts line for a host on 127.0.0.1:`port`; `public_key` is `type base64 ...`."""
    key_type, key_body = public_key.split()[:2]
    return f"[127.0.0.1]:{port} {key_type} {key_body}\n"


class SSHKeys:
    """A client key and a known_hosts entry for a host on a loopback port, and no sshd: for
    tests whose "host" is something else (a refused port, a silent listener, a paramiko
    server), so they need neither root nor OpenSSH's server."""

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
        return {
            "PRUNEHOOK_SSH_HOST": "127.0.0.1",
            "PRUNEHOOK_SSH_PORT": str(self.port),
            "PRUNEHOOK_SSH_USER": "root",
            "PRUNEHOOK_SSH_KEY_FILE": str(self.client_key),
            "PRUNEHOOK_SSH_KNOWN_HOSTS": str(self.known_hosts),
        }


class SSHServer:
    """OpenSSH's sshd on a loopback port, with a generated host key and authorized_keys.

    The client key is pinned to the prunehook guard, which logs every command it is
    asked to run, so tests can assert what really ran on the host.
    """

    # the tests prune cache a second old, some with -a; guard_options=() keeps the guard's defaults
    GUARD_OPTIONS = ("--min-until", "1s", "--allow-all")

    def __init__(
        self,
        root: Path,
        docker_host: str,
        guard_timeout: int = 60,
        guard_options: tuple[str, ...] = GUARD_OPTIONS,
    ):
        self.root = root
        self.docker_host = docker_host
        self.guard_timeout = guard_timeout
        self.guard_options = guard_options
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> SSHServer:
        sshd = find_binary("/usr/sbin/sshd", "sshd")
        find_binary("ssh-keygen")
        if os.geteuid() != 0:
            missing("sshd on loopback is started as root here")
        root = self.root
        root.mkdir(parents=True, exist_ok=True)
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        self.host_key = keygen(root / "host_key")
        self.client_key = keygen(root / "client_key")
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
                    "ListenAddress 127.0.0.1",
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
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as connection:
                return connection.recv(4).startswith(b"SSH-")
        except OSError:
            return False

    def known_hosts_line(self, host_key: Path) -> str:
        return known_hosts_line(self.port, host_key.with_suffix(".pub").read_text())

    def authorize(self, guarded: bool) -> None:
        """Pin the client key to the guard (the recommended setup), or leave it unrestricted."""
        public = Path(f"{self.client_key}.pub").read_text().strip()
        docker = find_binary(*BUILD_CLIENT_CANDIDATES)
        options = " ".join(self.guard_options)
        guard = f"bash {GUARD} --timeout {self.guard_timeout} --log {self.guard_log} {options}"
        guard += f" --docker {docker}"
        prefix = f'restrict,command="{guard}" ' if guarded else ""
        self.authorized_keys.write_text(prefix + public + "\n")

    def commands_run(self) -> list[str]:
        return self.guard_log.read_text().splitlines()

    def env(self) -> dict[str, str]:
        """The PRUNEHOOK_* variables that point prunehook at this host."""
        return {
            "PRUNEHOOK_SSH_HOST": "127.0.0.1",
            "PRUNEHOOK_SSH_PORT": str(self.port),
            "PRUNEHOOK_SSH_USER": "root",
            "PRUNEHOOK_SSH_KEY_FILE": str(self.client_key),
            "PRUNEHOOK_SSH_KNOWN_HOSTS": str(self.known_hosts),
        }

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def http_call(
    url: str, token: str | None, method: str = "POST", body: dict | None = None
) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = json.dumps(body).encode() if body is not None else b"" if method == "POST" else None
    call = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(call, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())
