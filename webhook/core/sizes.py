"""Reading the reclaimed size out of `docker builder prune` output.

Two formats exist and both must parse:
- the classic builder: ``Total reclaimed space: 20MB``
- buildx (Docker 23+): a table, then ``Total:\t6.776GB``
Sizes are Docker's go-units strings: decimal ``kB MB GB`` from HumanSize,
sometimes binary ``KiB MiB GiB`` from BytesSize.
"""

from __future__ import annotations

import re

# the largest integer a column holds (PostgreSQL's BIGINT, SQLite's INTEGER): what a size a
# host printed is clamped to, whatever it printed (a broken or hostile host may print 10^30),
# and the largest run id (a larger one names no run, and SQLite refuses to bind it)
BIGINT_MAX = 2**63 - 1

_DECIMAL = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4, "p": 1000**5, "e": 1000**6}
_BINARY = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5, "e": 1024**6}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtpe]?)(i?)b\s*$", re.IGNORECASE)
_TOTAL_LINE = re.compile(
    r"^\s*Total(?: reclaimed space)?:\s*(\d+(?:\.\d+)?\s*[kKmMgGtTpPeE]?i?B)\s*$", re.MULTILINE
)


def size_of(text: str) -> float | None:
    """Bytes in a go-units size such as ``11.05GB``, ``1.5GiB`` or ``0B``, unbounded (an
    infinity for a number too long for a float); None if not one."""
    match = _SIZE.match(text)
    if not match:
        return None
    number, prefix, binary = match.groups()
    prefix = prefix.lower()
    factor = _BINARY[prefix] if binary and prefix else _DECIMAL[prefix]
    return float(number) * factor


def clamp_size(size: float) -> int:
    """A size a host printed, as bytes a column holds: at most BIGINT_MAX."""
    return BIGINT_MAX if not size < BIGINT_MAX else max(0, int(size))


def parse_size(text: str) -> int | None:
    """Bytes in a size a host printed (`size_of`), clamped; None if not a size."""
    size = size_of(text)
    return None if size is None else clamp_size(size)


def printed_size(text: str) -> tuple[str, int] | None:
    """A size a host printed, and its bytes (`parse_size`); None if not a size."""
    size = parse_size(text)
    return None if size is None else (text, size)


def find_reclaimed(output: str) -> tuple[str, int] | None:
    """The reclaimed size as Docker printed it and in bytes, from the last total line."""
    matches = _TOTAL_LINE.findall(output or "")
    return printed_size(matches[-1].replace(" ", "")) if matches else None


def human_size(size: int) -> str:
    """Bytes as go-units' HumanSize prints them (decimal, four significant digits)."""
    value, unit = float(size), "B"
    for next_unit in ("kB", "MB", "GB", "TB", "PB", "EB"):
        if value < 1000:
            break
        value, unit = value / 1000, next_unit
    return f"{value:.4g}{unit}"
