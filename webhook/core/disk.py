"""The disk of a build host and the goals a run prunes towards, read and decided purely.

What a run measures comes from read-only probes, each parsed here:
- ``df -B1 --output=size,avail <docker_root>``: the filesystem's size and the bytes free
  to its users, exact (a header line, then ``<size> <avail>``);
- ``docker system df``: the build cache's size, as Docker prints it (the ``Build Cache``
  row of its table, a go-units size such as ``11.05GB``: 3-4 significant digits);
- ``docker buildx du``, where buildx is installed: the same size from its summary lines;
- ``docker version`` and ``docker buildx version``: what the host runs.

The goals are a target's `max_cache` (a size) and `min_free` (a size, or a percentage of
the filesystem). `keep_storage_bytes` is the kubelet's image GC done for BuildKit: the
largest cache size that meets both goals, which `docker builder prune --keep-storage`
then prunes down to, least recently used first.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from webhook.core.sizes import BIGINT_MAX, clamp_size, human_size, printed_size, size_of

# what a configured size may be written as: bytes, or a number and a unit (go-units'
# spelling: decimal kB MB GB TB, binary KiB MiB GiB TiB, any case)
_CONFIGURED_SIZE = re.compile(r"^\s*(\d{1,20}(?:\.\d{1,9})?)\s*([kKmMgGtT]i?[bB]|[bB])?\s*$")
_PERCENT = re.compile(r"^\s*(\d{1,3}(?:\.\d{1,6})?)\s*%\s*$")
_DF_ROW = re.compile(r"^\s*(\d{1,20})\s+(\d{1,20})\s*$")
_BUILD_CACHE_ROW = re.compile(r"^Build Cache\s+\d+\s+\d+\s+(\S+)\s+\S+", re.MULTILINE)
# `docker buildx du`'s summary: a tabwriter's cells, padded with tabs (docs show spaces)
_BUILDX_SUMMARY = re.compile(r"^(Shared|Private|Reclaimable|Total):\s+(\S+)\s*$")
_VERSION = re.compile(r"^\s*Version:\s*(\S+)\s*$")
_BUILDX_VERSION = re.compile(r"github\.com/docker/buildx\s+v?(\d+\.\d+(?:\.\d+)?\S*)")
_LEADING_NUMBERS = re.compile(r"^v?(\d+)\.(\d+)")


class SizeError(ValueError):
    """A configured size or percentage that cannot be used."""


def parse_configured_size(value: object) -> int:
    """Bytes from a configured size: an integer of bytes, ``"5000000000"``, ``"10GB"``
    (decimal, as Docker prints sizes) or ``"10GiB"`` (binary)."""
    if isinstance(value, bool):
        raise SizeError("a size, not a boolean")
    size: float
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        match = _CONFIGURED_SIZE.match(value)
        parsed = size_of(f"{match[1]}{match[2] or 'B'}") if match else None
        if parsed is None:
            raise SizeError(f"{value[:40]!r} is not a size such as 10GB, 512MiB or 5000000000")
        size = parsed
    else:
        raise SizeError("a size such as 10GB, or a number of bytes")
    # a bound, so a typo of twenty digits is refused (a host's figure is clamped instead)
    if not 0 <= size <= BIGINT_MAX:
        shown = f"{value} bytes" if isinstance(value, int) else repr(value[:40])
        raise SizeError(f"{shown} is out of range (0 to {BIGINT_MAX})")
    return int(size)


@dataclass(frozen=True)
class FreeGoal:
    """`min_free`: bytes, or a percentage of the filesystem holding Docker's data."""

    size: int | None = None
    percent: float | None = None

    def bytes_of(self, disk_size: int | None) -> int | None:
        """The goal in bytes; None when it is a percentage of a size not known."""
        if self.size is not None:
            return self.size
        if self.percent is None or disk_size is None:
            return None
        return math.ceil(disk_size * self.percent / 100)

    def __str__(self) -> str:
        if self.percent is not None:
            return f"{self.percent:g}%"
        return human_size(self.size or 0)


def parse_free_goal(value: object) -> FreeGoal:
    """`min_free` as configured: a size (`parse_configured_size`) or ``"15%"``."""
    if isinstance(value, str) and "%" in value:
        match = _PERCENT.match(value)
        percent = float(match.group(1)) if match else -1.0
        if not 0 < percent < 100:
            raise SizeError(f"{value[:40]!r} is not a percentage between 0 and 100, such as 15%")
        return FreeGoal(percent=percent)
    size = parse_configured_size(value)
    if size == 0:
        raise SizeError("0 bytes free is no goal; leave min_free unset instead")
    return FreeGoal(size=size)


@dataclass(frozen=True)
class Goals:
    """What a run prunes towards; neither set: the age prune alone, as before."""

    max_cache: int | None = None
    min_free: FreeGoal | None = None

    @property
    def any(self) -> bool:
        return self.max_cache is not None or self.min_free is not None


@dataclass(frozen=True)
class Measure:
    """One measurement of a host: None where its probe failed or could not be read."""

    disk_size: int | None = None
    disk_free: int | None = None
    cache: int | None = None

    @property
    def empty(self) -> bool:
        """Neither the disk nor the cache was read (the host was out of reach, say)."""
        return self.disk_free is None and self.cache is None

    @property
    def used_percent(self) -> float | None:
        """How full the disk is, what `critical_percent` is held against; None: not measured."""
        if not self.disk_size or self.disk_free is None:
            return None
        return 100 * (self.disk_size - self.disk_free) / self.disk_size


@dataclass(frozen=True)
class Assessment:
    """How a measurement stands against the goals.

    `met` is True when every goal set is met, False when one is missed, and None when
    none is set or one could not be measured (and none is known missed). `free_short`
    and `cache_over` say by how much (0 when met; None when not set or not measured).
    """

    met: bool | None
    free_short: int | None = None
    cache_over: int | None = None


def assess(goals: Goals, measure: Measure) -> Assessment:
    results: list[bool | None] = []
    free_short = cache_over = None
    if goals.max_cache is not None:
        if measure.cache is not None:
            cache_over = max(0, measure.cache - goals.max_cache)
        results.append(None if cache_over is None else cache_over == 0)
    if goals.min_free is not None:
        wanted = goals.min_free.bytes_of(measure.disk_size)
        if wanted is not None and measure.disk_free is not None:
            free_short = max(0, wanted - measure.disk_free)
        results.append(None if free_short is None else free_short == 0)
    if False in results:
        met: bool | None = False
    elif results and None not in results:
        met = True
    else:
        met = None
    return Assessment(met, free_short, cache_over)


def keep_storage_bytes(goals: Goals, measure: Measure) -> int | None:
    """The cache size meeting both goals, for ``--keep-storage``: at most `max_cache`, and
    small enough that freeing the rest brings free space up to `min_free`; 0 when even
    no cache at all would not reach it (then all cache that is not in use goes).

    None when there is no bound to prune to: no goal is missed, the cache is already
    within the bound (no cache is left), or the free-space goal is missed but the cache
    size is unknown and no `max_cache` bounds it instead.
    """
    missed = assess(goals, measure)
    if missed.met is not False:
        return None
    bounds: list[int] = []
    if goals.max_cache is not None:
        bounds.append(goals.max_cache)
    if missed.free_short and measure.cache is not None:
        bounds.append(max(0, measure.cache - missed.free_short))
    if not bounds:
        return None
    bound = min(bounds)
    return None if measure.cache is not None and bound >= measure.cache else bound


def parse_df(output: str) -> tuple[int, int] | None:
    """(size, avail) in bytes from ``df -B1 --output=size,avail PATH``; None if unreadable."""
    rows = [_DF_ROW.match(line) for line in output.splitlines()]
    found = [row for row in rows if row]
    if len(found) != 1:
        return None
    size, avail = (clamp_size(int(value)) for value in found[0].groups())
    return (size, avail) if avail <= size else None


def parse_build_cache(output: str) -> tuple[str, int] | None:
    """The build cache's size from ``docker system df`` (as printed, and in bytes)."""
    match = _BUILD_CACHE_ROW.search(output)
    return printed_size(match.group(1)) if match else None


def parse_buildx_du(output: str) -> tuple[str, int] | None:
    """The build cache's size from ``docker buildx du`` (as printed, and in bytes): the size
    ``docker system df`` calls the Build Cache's, from the summary lines ending its output.

    buildx (commands/diskusage.go) prints ``Total``, and ``Shared`` and ``Private`` (Total
    minus Shared) only when some record is shared. ``docker system df`` skips shared records,
    whose bytes belong to another record too (counting them would overstate what pruning can
    free), so its size is ``Private`` when printed, else ``Total``.

    Only the trailing block of summary lines is read, so no record's line is taken for one;
    None when it is not there (an error, a filtered or formatted listing) or not a size."""
    lines = output.rstrip().splitlines()
    summary: dict[str, str] = {}
    for line in reversed(lines):
        match = _BUILDX_SUMMARY.match(line)
        if not match:
            break
        if match.group(1) in summary:
            return None
        summary[match.group(1)] = match.group(2)
    if "Total" not in summary or ("Shared" in summary) != ("Private" in summary):
        return None
    return printed_size(summary.get("Private", summary["Total"]))


def parse_server_version(output: str) -> str | None:
    """The engine's version from plain ``docker version``: the first ``Version:`` after the
    ``Server`` line (the client's comes before it)."""
    in_server = False
    for line in output.splitlines():
        if line.startswith("Server"):
            in_server = True
        elif in_server:
            match = _VERSION.match(line)
            if match:
                return match.group(1)[:64]
    return None


def parse_buildx_version(output: str) -> str | None:
    """``github.com/docker/buildx v0.18.0 5b8fd0e`` -> ``0.18.0``; None without buildx."""
    match = _BUILDX_VERSION.search(output)
    return match.group(1)[:64] if match else None


def version_before(version: str | None, major: int, minor: int) -> bool | None:
    """Whether `version` (``20.10.24+dfsg1``, ``v28.2.0``) is older than major.minor;
    None when it cannot be read."""
    match = _LEADING_NUMBERS.match(version or "")
    if not match:
        return None
    return (int(match.group(1)), int(match.group(2))) < (major, minor)


def parse_gc_policy(output: str) -> list[str]:
    """BuildKit's GC rules from ``docker buildx inspect``, one line each
    (``rule#0: All: false; Filters: type==source.local; Keep Duration: 48h0m0s``); empty
    when it shows none."""
    rules: list[list[str]] = []
    for line in output.splitlines():
        text = line.strip()
        if text.startswith("GC Policy"):
            rules.append([text.removeprefix("GC Policy").strip().rstrip(":")])
        elif rules and text and ":" in text and line[:1].isspace():
            if len(rules[-1]) < 8:
                rules[-1].append(" ".join(text.split()))
        elif rules and not text:
            continue
        elif rules and not line[:1].isspace():
            break
    return [f"{rule[0]}: " + "; ".join(rule[1:]) for rule in rules[:8]]
