"""The `until` age filter, checked the way Docker checks it.

`docker builder prune --filter until=X` hands X to Go's `time.ParseDuration`,
which knows ns/us/ms/s/m/h and nothing longer: `7d` fails with "time: unknown
unit". Operators think in days and weeks, so those are converted to hours here
instead of being refused.
"""

from __future__ import annotations

import re

_GO_UNITS_S = {
    "ns": 1e-9,
    "us": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_FRIENDLY_UNITS_S = {"d": 86400.0, "w": 604800.0}
_TOKEN = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d|w)")
# Go's time.Duration is an int64 of nanoseconds: Docker refuses anything longer
GO_MAX_DURATION_S = (2**63 - 1) / 1e9
GO_DURATION = re.compile(r"^(?:(?:\d+(?:\.\d+)?|\.\d+)(?:ns|us|ms|s|m|h))+$")


class DurationError(ValueError):
    """The value is not a duration Docker would accept, even after conversion."""


def _tokens(text: str) -> list[tuple[float, str]]:
    position, found = 0, []
    for match in _TOKEN.finditer(text):
        if match.start() != position:
            break
        found.append((float(match.group(1)), match.group(2)))
        position = match.end()
    if not found or position != len(text):
        raise DurationError(
            f"{text!r} is not a duration: use a number with a unit, e.g. 90m, 24h, 1h30m, 7d"
        )
    return found


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
    text = raw.strip().replace("µs", "us").replace("μs", "us")
    tokens = _tokens(text)
    total_s = sum(value * {**_GO_UNITS_S, **_FRIENDLY_UNITS_S}[unit] for value, unit in tokens)
    if total_s <= 0:
        raise DurationError(f"{raw!r} must be longer than zero")
    if total_s > GO_MAX_DURATION_S or any(
        value * _GO_UNITS_S.get(unit, 0) > GO_MAX_DURATION_S for value, unit in tokens
    ):
        raise DurationError(f"{raw!r} is longer than Docker accepts (about 292 years)")
    if any(unit in _FRIENDLY_UNITS_S for _, unit in tokens):
        text = _format_hours_minutes_seconds(total_s)
    assert GO_DURATION.match(text), text
    return text


def duration_seconds(go_duration: str) -> float:
    """Seconds in a duration that `normalize_until` produced."""
    return sum(value * _GO_UNITS_S[unit] for value, unit in _tokens(go_duration))
