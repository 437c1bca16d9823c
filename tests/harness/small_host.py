"""A build host whose Docker data fills a small real disk: a loop-mounted ext4 image as
dockerd's data root, and an sshd with the guard in front of that dockerd."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.harness.disk import LoopDisk
from tests.harness.docker import DockerEngine
from tests.harness.ssh import SSHServer


@dataclass
class SmallDisk:
    disk: LoopDisk
    engine: DockerEngine
    host: SSHServer

    @property
    def docker_root(self) -> Path:
        return self.engine.data_root

    def percent_available(self) -> float:
        """What node_exporter shows: avail / size * 100 of the filesystem (statvfs)."""
        stat = os.statvfs(self.disk.mountpoint)
        return stat.f_bavail / stat.f_blocks * 100


@contextlib.contextmanager
def small_disk_host(root: Path, size_mb: int) -> Iterator[SmallDisk]:
    """The host on a `size_mb` filesystem under `root`, stopped on leaving."""
    disk = LoopDisk(root / "fs", size_mb=size_mb)
    engine = host = None
    try:
        disk.start()
        engine = DockerEngine(root / "dockerd", data_root=disk.mountpoint / "docker").start()
        host = SSHServer(root / "sshd", engine.host, docker_root=engine.data_root).start()
        yield SmallDisk(disk, engine, host)
    finally:
        if host is not None:
            host.stop()
        if engine is not None:
            engine.stop()
        disk.stop()
