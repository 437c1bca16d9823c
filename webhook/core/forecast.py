"""Watching a host and forecasting when its disk fills: pure (DESIGN.md, "Watching and
forecasting").

Every measurement of a host is a `Sample`: the watch's own, and each run's before and
after its prunes. The fill rate is a least-squares line of free bytes over the samples in
the window since the last prune: a prune's jump in free space (or a jump as large made
by someone else) starts a new line, so it is never read as the disk emptying. From the
line: when free space crosses `min_free` (0 without one) and when the cache reaches
`max_cache`. `verdict` says what a sample asks of the watch: nothing, a run now (a goal
missed), a run ahead of the forecast, or a word that the cache is too small to help.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from webhook.core.disk import Assessment, FreeGoal, Goals, Measure, assess
from webhook.core.outcome import RunOutcome
from webhook.core.planner import over_critical
from webhook.core.sizes import human_size

# a line needs this many samples, spanning at least this part of the window (30 min of
# the default 6 h): fewer, or closer together, and one busy minute would read as the trend
MIN_SAMPLES = 3
MIN_SPAN_PART = 1 / 12
# free space rising by more than this part of the disk between two samples is a prune
# (ours, or one by hand): the line starts again after it
JUMP_PART = 0.02
# a prune helps when the cache holds the whole shortfall, or at least this much of it
HELPS_BYTES = 1024**3


class SampleKind(StrEnum):
    WATCH = "watch"  # the watch's own measure: nothing was pruned
    BEFORE = "before"  # a run's measure before its prunes
    AFTER = "after"  # a run's last measure, after its prunes: a new line starts here


@dataclass(frozen=True, kw_only=True)
class Sample:
    """One measurement of a host (None where its probe failed)."""

    ts: float
    kind: SampleKind
    disk_size: int | None = None
    disk_free: int | None = None
    cache: int | None = None

    @property
    def measure(self) -> Measure:
        return Measure(self.disk_size, self.disk_free, self.cache)


@dataclass(frozen=True, kw_only=True)
class Forecast:
    """The line through a target's recent samples, and when it crosses the goals. Without
    a line, `why_none` says why; the times are None where a line never crosses (the disk
    is not filling, or no `max_cache` is set)."""

    samples: int
    window_s: float
    fill_rate_bytes_per_s: float | None = None
    cache_rate_bytes_per_s: float | None = None
    min_free_at: float | None = None
    full_at: float | None = None
    max_cache_at: float | None = None
    why_none: str | None = None

    def first_crossing(self) -> float | None:
        """The earliest time a goal is crossed, if any."""
        found = [ts for ts in (self.min_free_at, self.max_cache_at) if ts is not None]
        return min(found, default=None)


def run_samples(outcome: RunOutcome, now: float) -> list[Sample]:
    """A run's measures, finished `now`, as samples: before its prunes, and after them (a
    new line starts there) when a stage pruned. A stage the host refused or Docker failed
    freed nothing: the line goes on through it."""
    pruned = any(step.name.startswith("stage") and step.rc == 0 for step in outcome.steps)
    before = Sample(
        ts=now - (outcome.duration_s or 0.0),
        kind=SampleKind.BEFORE,
        disk_size=outcome.disk_size,
        disk_free=outcome.disk_free_before,
        cache=outcome.cache_before,
    )
    after = replace(
        before,
        ts=now,
        kind=SampleKind.AFTER if pruned else SampleKind.WATCH,
        disk_free=outcome.disk_free_after,
        cache=outcome.cache_after,
    )
    return [before, after]


def _line(points: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """Least squares: (slope, the line's value at the last point's time); None for fewer
    than two points or one time."""
    # here, not at the top: statistics imports fractions, which a cold start does without
    from statistics import StatisticsError, linear_regression

    last = points[-1][0] if points else 0.0
    try:  # time from the last point, so the intercept is the line's value there
        line = linear_regression([t - last for t, _ in points], [v for _, v in points])
    except StatisticsError:
        return None
    return line.slope, line.intercept


def _resized(previous: Sample, sample: Sample) -> bool:
    """Another disk (Docker's data moved, the disk resized): its size changed by more than a
    jump. A smaller change is ZFS's way, where a dataset's size is its used space plus the
    pool's free space."""
    before, now = previous.disk_size or 0, sample.disk_size or 0
    return abs(now - before) > JUMP_PART * max(before, now)


def current_line(samples: Sequence[Sample], now: float, window_s: float) -> list[Sample]:
    """The samples the line goes through: inside the window, since the last prune (an
    `AFTER` sample starts it), the last jump in free space or the last change of the disk's
    size (another filesystem: its free space is no point on the same line), oldest first."""
    inside = sorted(
        (s for s in samples if now - window_s <= s.ts <= now and s.disk_free is not None),
        key=lambda s: s.ts,
    )
    start = 0
    for index, sample in enumerate(inside):
        previous = inside[index - 1] if index else None
        if sample.kind == SampleKind.AFTER or (previous and _resized(previous, sample)):
            start = index
        elif previous and sample.disk_size:
            rise = (sample.disk_free or 0) - (previous.disk_free or 0)
            if rise > JUMP_PART * sample.disk_size:
                start = index
    return inside[start:]


def _crossing(rate: float, at_last: float, last_ts: float, level: float) -> float | None:
    """When a line falling by `rate` a second from `at_last` (at `last_ts`) reaches `level`."""
    if rate <= 0:
        return None
    return last_ts + (at_last - level) / rate


def forecast(samples: Sequence[Sample], now: float, window_s: float, goals: Goals) -> Forecast:
    """The forecast of a target from its samples (any order, any age)."""
    line = current_line(samples, now, window_s)
    counted = Forecast(samples=len(line), window_s=window_s)
    if len(line) < MIN_SAMPLES:
        why = f"{len(line)} samples since the last prune in the window; {MIN_SAMPLES} needed"
        return replace(counted, why_none=why)
    span = line[-1].ts - line[0].ts
    if span < window_s * MIN_SPAN_PART:
        why = f"the samples span {span:.0f} s; at least {window_s * MIN_SPAN_PART:.0f} s needed"
        return replace(counted, why_none=why)
    fitted = _line([(s.ts, float(s.disk_free or 0)) for s in line])
    if fitted is None:
        return replace(counted, why_none="the samples were all taken at one time")
    slope, free_now = fitted
    rate = -slope
    last = line[-1]
    wanted = goals.min_free.bytes_of(last.disk_size) if goals.min_free else 0
    cache_rate = max_cache_at = None
    cached = [(s.ts, float(s.cache)) for s in line if s.cache is not None]
    cache_line = _line(cached) if len(cached) >= MIN_SAMPLES else None
    if cache_line is not None:
        cache_rate, cache_now = cache_line
        if goals.max_cache is not None:
            # the cache rising to max_cache is its negative falling to -max_cache
            max_cache_at = _crossing(cache_rate, -cache_now, cached[-1][0], -goals.max_cache)
    return replace(
        counted,
        fill_rate_bytes_per_s=rate,
        cache_rate_bytes_per_s=cache_rate,
        min_free_at=None if wanted is None else _crossing(rate, free_now, last.ts, wanted),
        full_at=_crossing(rate, free_now, last.ts, 0),
        max_cache_at=max_cache_at,
    )


def ahead_goals(goals: Goals, found: Forecast, horizon_s: float, disk_size: int | None) -> Goals:
    """The goals of a run started ahead of the forecast: room for what the horizon will
    fill. Free space: `min_free` (0 without one) plus the fill expected over `horizon_s`;
    the cache: `max_cache` less what it is expected to grow by (the disk's fill where the
    cache's own rate is unknown). `keep_storage_bytes` then prunes as far as the cache
    allows."""
    fill = max(0.0, (found.fill_rate_bytes_per_s or 0.0) * horizon_s)
    wanted = goals.min_free.bytes_of(disk_size) if goals.min_free else 0
    min_free = goals.min_free
    if wanted is not None and wanted + fill > 0:
        min_free = FreeGoal(size=int(wanted + fill))
    max_cache = goals.max_cache
    if max_cache is not None:
        rate = found.cache_rate_bytes_per_s
        growth = max(
            0.0, (rate if rate is not None else found.fill_rate_bytes_per_s or 0) * horizon_s
        )
        max_cache = max(0, int(max_cache - growth))
    return Goals(max_cache, min_free)


class Act(StrEnum):
    """What a sample asks of the watch."""

    NOTHING = "nothing"
    PRUNE = "prune"  # a goal is missed now
    FORECAST = "forecast"  # a goal will be missed within the horizon
    CACHE_TOO_SMALL = "cache_too_small"  # a goal is missed, and pruning would not help


@dataclass(frozen=True)
class Verdict:
    act: Act
    reason: str
    # the goals of the run to start (PRUNE: the target's own; FORECAST: `ahead_goals`, or
    # none for a target without goals, the age prune alone); a run raises either under
    # critical_percent when it finds the disk over it (`critical_aim`)
    goals: Goals | None = None


def _shortfall(standing: Assessment, over: int, measure: Measure) -> int | None:
    """The bytes a prune would have to free to meet every goal `standing` says is missed and
    free `over` (`over_critical`); 0 when nothing is missed, None when unknown."""
    if measure.used_percent is None and standing.met is None:
        return None
    return max(standing.free_short or 0, standing.cache_over or 0, over)


def helps(cache: int | None, needed: int) -> bool:
    """Whether pruning a cache of `cache` bytes is worth a run that should free `needed`:
    it holds all of it, or at least HELPS_BYTES of it (unknown: a run finds out)."""
    return cache is None or cache >= min(needed, HELPS_BYTES)


def verdict(
    goals: Goals,
    critical_percent: float,
    sample: Sample,
    found: Forecast | None,
    horizon_s: float,
) -> Verdict:
    """What the watch does with a fresh sample and the forecast made with it."""
    measure = sample.measure
    standing = assess(goals, measure)
    over = over_critical(measure, critical_percent)
    short = _shortfall(standing, over, measure)
    if short:
        if standing.cache_over or helps(measure.cache, short):
            return Verdict(Act.PRUNE, f"{human_size(short)} short of its goals", goals)
        cache = human_size(measure.cache or 0)
        why = f"the disk is {human_size(short)} short of its goals, but the cache is only {cache}"
        return Verdict(Act.CACHE_TOO_SMALL, why)
    crossing = found.first_crossing() if found else None
    if found is None or crossing is None or crossing > sample.ts + horizon_s:
        return Verdict(Act.NOTHING, "no goal is missed or forecast to be")
    ahead = ahead_goals(goals, found, horizon_s, measure.disk_size)
    needed = _shortfall(assess(ahead, measure), over_critical(measure, 100.0), measure) or 0
    if not helps(measure.cache, needed):
        cache = human_size(measure.cache or 0)
        why = f"a goal is forecast to be missed, but the cache is only {cache}"
        return Verdict(Act.NOTHING, why)
    hours = max(0.0, crossing - sample.ts) / 3600
    why = f"a goal is forecast to be missed in ~{hours:.1f} h"
    # without goals the host's guard allows no stage 2 (`hosts add`): the age prune alone
    return Verdict(Act.FORECAST, why, ahead if goals.any else goals)


def about(seconds: float) -> str:
    """How far away, roughly, for people: `~40 min`, `~3 h`, `~2 days`."""
    seconds = max(0.0, seconds)
    if seconds < 5400:
        return f"~{max(1, round(seconds / 60))} min"
    if seconds < 2 * 86400:
        return f"~{round(seconds / 3600)} h"
    return f"~{round(seconds / 86400)} days"


def when(ts: float, now: float) -> str:
    """`now`, or how far away `ts` is: `in ~3 h`."""
    return "now" if ts <= now else f"in {about(ts - now)}"


def headline(found: Forecast | None, now: float) -> str:
    """A forecast in a few words, for a card or a table's cell: `full in ~3 h`."""
    if found is None:
        return "not measured"
    if found.why_none or found.fill_rate_bytes_per_s is None:
        return "no forecast yet"
    if found.full_at is None:
        return "not filling"
    return f"full {when(found.full_at, now)}"


def in_words(found: Forecast | None, now: float) -> str:
    """A forecast as the page and `flask check` say it: `full in ~3 h (1.2GB/h)`."""
    if found is None:
        return "not measured yet"
    rate = found.fill_rate_bytes_per_s
    if found.why_none or rate is None:
        return f"no forecast: {found.why_none or 'no line'}"
    if found.full_at is None:
        return "not filling: free space is steady or rising"
    said = [f"full {when(found.full_at, now)}"]
    if found.min_free_at is not None and found.min_free_at < found.full_at:
        said.insert(0, f"under min_free {when(found.min_free_at, now)}")
    if found.max_cache_at is not None:
        said.append(f"cache over max_cache {when(found.max_cache_at, now)}")
    return f"{', '.join(said)} (filling {human_size(round(rate * 3600))}/h)"
