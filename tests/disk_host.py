"""A build host simulated as numbers, for service-level tests (a fake at our own boundary).

`DiskHost` stands in for the SSH runner: a disk with its size and free bytes, and a build
cache of records young and old (and, for buildx, some shared). Its probes print what df,
`docker system df`, `docker version`, `docker buildx version` and `docker buildx du`
print; its prunes change the numbers as BuildKit would (the age prune removes the old
records, `--keep-storage N` keeps at most N, least recently used first), printing the
classic builder's total or buildx's table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.conftest import NO_BUILDX
from webhook.core.outcome import Execution
from webhook.core.sizes import human_size
from webhook.core.targets import Target

GB = 1000**3
ROOT = "/var/lib/docker"
DF = f"df -B1 --output=size,avail {ROOT}"
VERSION = (
    "Client:\n Version: 28.2.2\n\nServer: Docker Engine - Community\n Engine:\n  Version: 28.2.2\n"
)
BUILDX_DEPRECATION = (
    "Flag --keep-storage has been deprecated, keep-storage flag has been changed to"
    " reserved-space\n"
)


@dataclass
class DiskHost:
    """A build host as numbers. `young` and `old` are the cache's bytes younger and older
    than the age filter; `others` the disk's other data."""

    size: int = 100 * GB
    others: int = 60 * GB
    young: int = 30 * GB
    old: int = 0
    buildx: bool = False
    # cache records shared with other records: `docker buildx du` counts them in its Total
    # (and prints Shared and Private), `docker system df` leaves them out
    shared: int = 2 * GB
    # other data the disk loses while the age prune runs (a log rotated meanwhile): free
    # space then grows by more than the cache shrinks
    others_freed_by_stage_1: int = 0
    answers: dict[str, Execution] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)

    @property
    def cache(self) -> int:
        return self.young + self.old

    @property
    def free(self) -> int:
        return self.size - self.others - self.cache

    def __call__(self, target: Target, command: str) -> Execution:
        self.commands.append(command)
        if command in self.answers:
            return self.answers[command]
        if command.startswith("df "):
            return Execution(0, f"   1B-blocks       Avail\n{self.size} {self.free}\n", "", 0.01)
        if command == "docker system df":
            row = f"Build Cache     9         0         {human_size(self.cache)}     0B\n"
            return Execution(0, "TYPE  TOTAL  ACTIVE  SIZE  RECLAIMABLE\n" + row, "", 0.05)
        if command == "docker version":
            return Execution(0, VERSION, "", 0.02)
        if command == "docker buildx du":
            return self.buildx_du()
        if command == "docker buildx version":
            if self.buildx:
                return Execution(0, "github.com/docker/buildx v0.24.0 d0e5e86\n", "", 0.02)
            return Execution(1, "", NO_BUILDX, 0.01)
        if "--filter until=" in command:
            self.others -= self.others_freed_by_stage_1
            return self.pruned(self.old, young=self.young)
        if "--keep-storage " in command:
            keep = int(command.rsplit(" ", 1)[1])
            gone = max(0, self.cache - keep)  # least recently used first: the old go first
            old_gone = min(self.old, gone)
            return self.pruned(gone, young=self.young - (gone - old_gone), old=self.old - old_gone)
        return Execution(126, "", f"prunehook-guard: denied: {command}\n", 0.01)

    def buildx_du(self) -> Execution:
        if not self.buildx:
            return Execution(1, "", NO_BUILDX, 0.01)
        records = "ID\tRECLAIMABLE\tSIZE\tLAST ACCESSED\n"
        for name, size in (("young", self.young), ("old", self.old)):
            records += f"{name}\ttrue\t{human_size(size)}\t1 hour ago\n"
        summary = f"Reclaimable:\t{human_size(self.cache)}\n"
        if self.shared:
            records += f"shared\ttrue\t{human_size(self.shared)}*\t1 hour ago\n"
            summary = (
                f"Shared:\t\t{human_size(self.shared)}\nPrivate:\t\t{human_size(self.cache)}\n"
                + f"Reclaimable:\t{human_size(self.cache + self.shared)}\n"
            )
        total = f"Total:\t\t{human_size(self.cache + self.shared)}\n"
        return Execution(0, records + summary + total, "", 0.01)

    def pruned(self, gone: int, young: int, old: int = 0) -> Execution:
        self.young, self.old = young, old
        if self.buildx:
            out = f"ID\tRECLAIMABLE\tSIZE\tLAST ACCESSED\nabc\ttrue\t{human_size(gone)}\t\n"
            return Execution(0, out + f"Total:\t{human_size(gone)}\n", BUILDX_DEPRECATION, 1.0)
        return Execution(0, f"Total reclaimed space: {human_size(gone)}\n", "", 1.0)

    def prunes(self) -> list[str]:
        return [c for c in self.commands if c.startswith("docker builder prune")]
