"""A small real filesystem for Docker's data: an ext4 image, loop-mounted (needs root)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.harness.parts import PartMissing, find_binary


class LoopDisk:
    """An ext4 filesystem of `size_mb` in an image file under `root`, mounted at
    `root / "mnt"`: its free space is real, and small enough to fill in a test."""

    def __init__(self, root: Path, size_mb: int = 400):
        self.root = root
        self.size_mb = size_mb
        self.image = root / "disk.img"
        self.mountpoint = root / "mnt"
        self.mounted = False

    def start(self) -> LoopDisk:
        if os.geteuid() != 0:
            raise PartMissing("mounting a loop filesystem needs root")
        mkfs = find_binary("mkfs.ext4", "/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4")
        self.root.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(exist_ok=True)
        with self.image.open("wb") as image:
            image.truncate(self.size_mb * 1024 * 1024)
        subprocess.run([mkfs, "-q", "-F", str(self.image)], check=True, capture_output=True)
        mounted = subprocess.run(
            ["mount", "-o", "loop", str(self.image), str(self.mountpoint)],
            capture_output=True,
            text=True,
        )
        if mounted.returncode != 0:
            raise PartMissing(f"cannot loop-mount an ext4 image here: {mounted.stderr.strip()}")
        self.mounted = True
        return self

    def free_bytes(self) -> int:
        """What df shows as Avail: the blocks free to users other than root's reserve."""
        stat = os.statvfs(self.mountpoint)
        return stat.f_bavail * stat.f_frsize

    def stop(self) -> None:
        if self.mounted:
            # the loop device is freed with the last unmount (mount -o loop sets autoclear);
            # a mount still busy is detached now and freed when its last user lets go
            done = subprocess.run(["umount", str(self.mountpoint)], capture_output=True)
            if done.returncode != 0:
                subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True)
            self.mounted = False
        self.image.unlink(missing_ok=True)
        shutil.rmtree(self.mountpoint, ignore_errors=True)
