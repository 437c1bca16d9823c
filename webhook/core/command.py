"""The commands prunehook ever runs on a build host: its two prunes and its probes.

Only settings and prunehook's own numbers reach them, never a request field: `until`
is re-checked here so that nothing but a Go duration can ever be interpolated, the
stage-2 bound is an integer of bytes, and `docker_root` a plain absolute path.
contrib/prunehook-guard allows exactly these on the host.
"""

from __future__ import annotations

import re

from webhook.core.duration import GO_DURATION
from webhook.core.sizes import BIGINT_MAX
from webhook.core.targets import is_docker_root

# the read-only probes (the guard allows each exactly as written here)
SYSTEM_DF = "docker system df"
# the build cache alone, where buildx is installed: it asks BuildKit for its records and
# walks no image, container or volume (`docker system df` walks them all)
BUILDX_DU = "docker buildx du"
DOCKER_VERSION = "docker version"
BUILDX_VERSION = "docker buildx version"
BUILDX_INSPECT = "docker buildx inspect"
# a daemon's address as prunehook-guard's --docker-host takes it (the guard's DAEMON_ADDRESS);
# nothing that could end the authorized_keys option or reach a shell
DAEMON_ADDRESS = re.compile(
    r"unix:///[A-Za-z0-9._/+-]{1,255}|(tcp|ssh)://[][A-Za-z0-9._:@-]{1,255}"
)
# where prunehook-guard is installed on a host, as an authorized_keys command names it
GUARD_PATH = re.compile(r"/[A-Za-z0-9._/+-]{1,255}")
# where Docker keeps its data, for a docker_root that df cannot measure (`prunehook check`)
DOCKER_ROOT_DIR = "docker info --format {{.DockerRootDir}}"


def build_prune_command(until: str, prune_all: bool) -> str:
    """`docker builder prune -f --filter until=<until>`, with `-a` only when asked."""
    if not GO_DURATION.match(until):
        raise ValueError(f"until={until!r} is not a Go duration")
    all_flag = " -a" if prune_all else ""
    return f"docker builder prune -f{all_flag} --filter until={until}"


def build_keep_storage_command(keep_bytes: int, prune_all: bool) -> str:
    """Stage 2: `docker builder prune -f --keep-storage <bytes>`, `-a` only when asked. The
    bound is given in bytes: the CLI would read `10GB` as 10 GiB."""
    if isinstance(keep_bytes, bool) or not isinstance(keep_bytes, int):
        raise ValueError(f"keep_bytes={keep_bytes!r} is not a number of bytes")
    if not 0 <= keep_bytes <= BIGINT_MAX:
        raise ValueError(f"keep_bytes={keep_bytes} is out of range")
    all_flag = " -a" if prune_all else ""
    return f"docker builder prune -f{all_flag} --keep-storage {keep_bytes}"


def build_df_command(docker_root: str) -> str:
    """The probe of the filesystem holding Docker's data, in bytes."""
    if not is_docker_root(docker_root):
        raise ValueError(f"docker_root={docker_root[:300]!r} is not a plain absolute path")
    return f"df -B1 --output=size,avail {docker_root}"
