"""A Docker engine of our own on a unix socket, with real BuildKit cache to prune."""

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
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from tests.harness.parts import BUILD_CLIENT_CANDIDATES, PartMissing, find_binary, wait_for


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

    def __init__(self, root: Path, data_root: Path | None = None):
        self.root = root
        # where Docker keeps its data: a folder of `root`, or a filesystem of its own
        self.data_root = data_root or root / "data"
        # unix socket paths are limited to ~108 bytes; keep the socket path short
        self.socket = Path("/tmp") / f"ph-docker-{secrets.token_hex(4)}.sock"
        self.host = f"unix://{self.socket}"
        self.process: subprocess.Popen | None = None
        self.log_path = root / "dockerd.log"
        self.exec_root = Path("/tmp") / f"ph-dx-{secrets.token_hex(4)}"

    def start(self) -> DockerEngine:
        if os.geteuid() != 0:
            raise PartMissing("dockerd needs root")
        dockerd = find_binary("dockerd")
        self.client = find_binary(*BUILD_CLIENT_CANDIDATES)
        self.root.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = self._spawn(dockerd, self.exec_root, log)
        wait_for(self._answers, 60, f"dockerd (log: {self.log_path})", self.process)
        return self

    def _spawn(self, dockerd: str, exec_root: Path, log: IO[bytes]) -> subprocess.Popen:
        return subprocess.Popen(
            [
                dockerd,
                "--data-root",
                str(self.data_root),
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

    def fill_build_cache(self, context: Path, sizes: list[int]) -> None:
        """Real BuildKit cache and nothing else: one build per size, each of a FROM scratch
        image copying that many fresh random bytes, exported to /dev/null (no image keeps
        it). Each build leaves about twice its size: the context, and the copy."""
        for index, size in enumerate(sizes):
            folder = context / f"build-{index}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "blob.bin").write_bytes(os.urandom(size))
            (folder / "Dockerfile").write_text("FROM scratch\nCOPY blob.bin /blob.bin\n")
            self.cli("build", "-q", "-o", "type=tar,dest=/dev/null", str(folder))

    def cli(self, *args: str, stdin: bytes | None = None) -> str:
        """The docker client against this engine; its stdout."""
        done = subprocess.run(
            [self.client, *args],
            env={**os.environ, "DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "1"},
            input=stdin,
            check=True,
            capture_output=True,
            timeout=120,
        )
        return done.stdout.decode()

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
