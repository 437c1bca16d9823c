"""The `until` age filter, checked the way Docker checks it; and a span said to people.

`docker builder prune --filter until=X` hands X to Go's `time.ParseDuration`,
which knows ns/us/ms/s/m/h and nothing longer: `7d` fails with "time: unknown
unit". Operators think in days and weeks, so those are converted to hours here
instead of being refused.
"""

from __future__ import annotations

import re

_GO_UNITS_S = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_FRIENDLY_UNITS_S = {"d": 86400.0, "w": 604800.0}
_UNITS_S = _GO_UNITS_S | _FRIENDLY_UNITS_S
# "1h2m3s4ms5us6ns" is 15 characters: anything much longer is a typo, refused before any
# pattern sees it (an unbounded digit run made the old token scan quadratic)
MAX_LENGTH = 64
# 20 digits already exceed what Go's int64 of nanoseconds holds in any unit; ASCII digits
# only (`\d` and float() take any script's, Go's parser does not)
_NUMBER = r"(?:[0-9]{1,20}(?:\.[0-9]{1,20})?|\.[0-9]{1,20})"
_TOKEN = re.compile(rf"({_NUMBER})(ns|us|ms|s|m|h|d|w)")
_DURATION = re.compile(rf"(?:{_TOKEN.pattern})+")
# Go's time.Duration is an int64 of nanoseconds: Docker refuses anything longer
GO_MAX_DURATION_S = (2**63 - 1) / 1e9
# \Z, not $: `$` also matches before a trailing newline, which must never reach a command line
GO_DURATION = re.compile(rf"(?:{_NUMBER}(?:ns|us|ms|s|m|h)){{1,{MAX_LENGTH}}}\Z")


class DurationError(ValueError):
    """The value is not a duration Docker would accept, even after conversion."""


def _tokens(text: str) -> list[tuple[float, str]]:
    if not _DURATION.fullmatch(text):
        raise DurationError(
            f"{text!r} is not a duration: use a number with a unit, e.g. 90m, 24h, 1h30m, 7d"
        )
    return [(float(number), unit) for number, unit in _TOKEN.findall(text)]


def _format_hours_minutes_seconds(total_s: float) -> str:
    whole = round(total_s)
    hours, rest = divmod(whole, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    parts.append(f"{seconds}s" if seconds or not (hours or minutes) else "")
    return "".join(parts)


def normalize_until(raw: str) -> str:
    """Return `raw` as a Go duration Docker accepts; days and weeks become hours.

    Raises DurationError for anything Docker would reject or that is not positive.
    """
    text = raw.strip()
    if len(text) > MAX_LENGTH:
        raise DurationError(
            f"{text[:12]!r}... is {len(text)} characters long: a duration is at most "
            f"{MAX_LENGTH}, e.g. 24h"
        )
    text = text.replace("µs", "us").replace("μs", "us")
    tokens = _tokens(text)
    total_s = sum(value * _UNITS_S[unit] for value, unit in tokens)
    if total_s <= 0:
        raise DurationError(f"{raw!r} must be longer than zero")
    if total_s > GO_MAX_DURATION_S:
        raise DurationError(f"{raw!r} is longer than Docker accepts (about 292 years)")
    if any(unit in _FRIENDLY_UNITS_S for _, unit in tokens):
        text = _format_hours_minutes_seconds(total_s)
        if text == "0s":  # 0.000001d rounds to nothing: `until=0s` would prune all cache
            raise DurationError(f"{raw!r} is shorter than a second once days become hours")
    assert GO_DURATION.match(text), text
    return text


def duration_seconds(go_duration: str) -> float:
    """Seconds in a duration that `normalize_until` produced."""
    return sum(value * _GO_UNITS_S[unit] for value, unit in _tokens(go_duration))


_SPAN_UNITS = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))


def span(seconds: float) -> str:
    """`3 h 12 min`, `12 min`, `45 s`, `2 d 4 h`: how long, in its two largest units, for
    people (the commands and the pages alike)."""
    left = abs(round(seconds))
    counts = []
    for unit, size in _SPAN_UNITS:
        count, left = divmod(left, size)
        counts.append((count, unit))
    first = next((i for i, (count, _) in enumerate(counts) if count), len(counts) - 1)
    return (
        " ".join(f"{count} {unit}" for count, unit in counts[first : first + 2] if count) or "0 s"
    )
