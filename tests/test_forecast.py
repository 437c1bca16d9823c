"""The forecast as pure functions (DESIGN.md, "Watching and forecasting"): the line through
a host's samples, when it crosses the goals, what a fresh sample asks of the watch, and the
goals of a run started ahead of the forecast. No I/O here.

The properties draw whole histories: a disk of any plausible size, sampled at any spacing
from a second to an hour, falling at any rate (a part of the disk over the line's span),
with noise of up to 0.5% of the fall over that span. "Within 5%" is 5% of the time from
the last sample to the true crossing: least squares with that noise is off by at most
~3% (slope 3e/T, the end of the line 2.5e), so 5% leaves room and still catches a line
read wrong. The true crossing is at least one span ahead (a line extrapolated less far
than its own length), as a forecast worth acting on is.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.harness import succeeded_outcome
from webhook.core.disk import FreeGoal, Goals, Measure, assess, keep_storage_bytes
from webhook.core.forecast import (
    HELPS_BYTES,
    JUMP_PART,
    MIN_SAMPLES,
    MIN_SPAN_PART,
    Act,
    Forecast,
    Sample,
    SampleKind,
    ahead_goals,
    current_line,
    forecast,
    helps,
    run_samples,
    verdict,
)
from webhook.core.outcome import Step
from webhook.core.planner import Next, plan, unconfirmed
from webhook.core.sizes import human_size

GIB, TIB = 1024**3, 1024**4
NOW = 1_800_000_000.0
HOUR = 3600.0
WINDOW = 6 * HOUR
HORIZON = 4 * HOUR
# pure and fast: more examples than the store-backed properties afford
PROPERTY = settings(max_examples=100, deadline=None)

ongoing = st.sampled_from([SampleKind.WATCH, SampleKind.BEFORE])


@dataclass(frozen=True)
class Fill:
    """A drawn history falling steadily (samples oldest first) and its true crossings."""

    samples: list[Sample]
    goals: Goals
    size: int
    now: float
    window_s: float
    rate: float  # bytes a second the free space falls by
    min_free_at: float
    full_at: float

    @property
    def last_ts(self) -> float:
        return self.samples[-1].ts


def min_free_goals(size: int, part: float, form: str) -> Goals:
    if form == "none" or part <= 0:
        return Goals()
    if form == "percent":
        return Goals(min_free=FreeGoal(percent=part * 100))
    return Goals(min_free=FreeGoal(size=max(1, int(part * size))))


@st.composite
def steady_fills(draw: st.DrawFn, noisy: bool = True, first_kind: SampleKind | None = None):
    size = draw(st.integers(GIB, 64 * TIB))
    count = draw(st.integers(MIN_SAMPLES, 60))
    spacing = draw(st.floats(1.0, HOUR))
    span = spacing * (count - 1)
    # the crossing of min_free comes `ahead` spans after the last sample
    ahead = draw(st.floats(1.0, 30.0))
    fall_part = draw(st.floats(1e-4, 0.9 / (ahead + 1)))
    fall = fall_part * size
    level_part = draw(st.floats(0.0, 0.95 - fall_part * (ahead + 1)))
    goals = min_free_goals(size, level_part, draw(st.sampled_from(["none", "size", "percent"])))
    level = goals.min_free.bytes_of(size) if goals.min_free else 0
    assert level is not None
    last_free = level + fall * ahead
    rate = fall / span
    amplitude = 0.005 * fall if noisy else 0.0
    noise = draw(st.lists(st.floats(-1.0, 1.0), min_size=count, max_size=count))
    kinds = draw(st.lists(ongoing, min_size=count, max_size=count))
    if first_kind is not None:
        kinds[0] = first_kind
    # the window holds the line, which spans at least MIN_SPAN_PART of it
    window = span * draw(st.floats(1.0, 11.9))
    now = NOW + draw(st.floats(0.0, min(spacing, (window - span) / 2)))
    first_ts = NOW - span
    samples = []
    for index in range(count):
        ts = first_ts + index * spacing
        free = last_free + rate * (NOW - ts) + amplitude * noise[index]
        samples.append(Sample(ts=ts, kind=kinds[index], disk_size=size, disk_free=round(free)))
    return Fill(
        samples=samples,
        goals=goals,
        size=size,
        now=now,
        window_s=window,
        rate=rate,
        min_free_at=NOW + (last_free - level) / rate,
        full_at=NOW + last_free / rate,
    )


def within(found: float | None, true: float, since: float, part: float) -> bool:
    return found is not None and abs(found - true) <= part * (true - since)


# --- a steady fill ---------------------------------------------------------------------


@PROPERTY
@given(fill=steady_fills())
def test_a_steady_fill_is_forecast_within_5_percent_of_its_true_crossing(fill: Fill):
    found = forecast(fill.samples, fill.now, fill.window_s, fill.goals)
    assert found.why_none is None
    assert found.samples == len(fill.samples)
    assert within(found.min_free_at, fill.min_free_at, fill.last_ts, 0.05)
    assert within(found.full_at, fill.full_at, fill.last_ts, 0.05)
    assert found.fill_rate_bytes_per_s is not None
    assert abs(found.fill_rate_bytes_per_s - fill.rate) <= 0.05 * fill.rate


@PROPERTY
@given(fill=steady_fills(noisy=False))
def test_a_noiseless_fill_is_forecast_at_its_true_crossing(fill: Fill):
    found = forecast(fill.samples, fill.now, fill.window_s, fill.goals)
    # whole bytes only: the samples are rounded to them, off by ~1e-5 of a fall of 100 KiB
    assert within(found.min_free_at, fill.min_free_at, fill.last_ts, 1e-4)
    assert within(found.full_at, fill.full_at, fill.last_ts, 1e-4)


@PROPERTY
@given(fill=steady_fills())
def test_without_min_free_the_goal_crossed_is_a_full_disk(fill: Fill):
    found = forecast(fill.samples, fill.now, fill.window_s, Goals())
    assert found.min_free_at == found.full_at
    assert found.first_crossing() == found.full_at


@PROPERTY
@given(fill=steady_fills())
def test_min_free_is_crossed_before_the_disk_is_full(fill: Fill):
    found = forecast(fill.samples, fill.now, fill.window_s, fill.goals)
    assert found.min_free_at is not None and found.full_at is not None
    # not strictly: a 1-byte min_free on a fast disk is crossed within a float's resolution
    assert found.min_free_at <= found.full_at


def test_a_percentage_min_free_of_an_unknown_disk_size_has_no_crossing_but_full_at_does():
    samples = [
        Sample(ts=NOW - 3600 + 600 * i, kind=SampleKind.WATCH, disk_free=100 * GIB - i * GIB)
        for i in range(7)
    ]
    found = forecast(samples, NOW, WINDOW, Goals(min_free=FreeGoal(percent=10)))
    assert found.min_free_at is None
    assert found.full_at is not None and abs(found.full_at - (NOW + 94 * 600)) < 1


@PROPERTY
@given(fill=steady_fills(), randoms=st.randoms(use_true_random=False))
def test_the_samples_order_does_not_change_the_forecast(fill: Fill, randoms):
    shuffled = list(fill.samples)
    randoms.shuffle(shuffled)
    found = forecast(shuffled, fill.now, fill.window_s, fill.goals)
    assert found == forecast(fill.samples, fill.now, fill.window_s, fill.goals)


# --- a flat or rising disk -------------------------------------------------------------


@st.composite
def flat_or_rising(draw: st.DrawFn):
    size = draw(st.integers(GIB, 64 * TIB))
    count = draw(st.integers(MIN_SAMPLES, 60))
    spacing = draw(st.floats(1.0, HOUR))
    # below JUMP_PART a step, so the line is never broken: a slow rise, or none
    step_part = draw(st.one_of(st.just(0.0), st.floats(1e-6, JUMP_PART / 2)))
    step = step_part * size
    amplitude = 0.005 * step * (count - 1)
    start = amplitude + draw(st.floats(0.0, 0.98 - step_part * (count - 1))) * size
    noise = draw(st.lists(st.floats(-1.0, 1.0), min_size=count, max_size=count))
    kinds = draw(st.lists(ongoing, min_size=count, max_size=count))
    samples = [
        Sample(
            ts=NOW - spacing * (count - 1 - i),
            kind=kinds[i],
            disk_size=size,
            disk_free=round(start + step * i + amplitude * noise[i]),
        )
        for i in range(count)
    ]
    goals = min_free_goals(
        size, draw(st.floats(0.0, 0.9)), draw(st.sampled_from(["size", "percent"]))
    )
    return samples, goals, spacing * (count - 1)


@PROPERTY
@given(drawn=flat_or_rising())
def test_a_flat_or_rising_disk_forecasts_nothing(drawn):
    samples, goals, span = drawn
    found = forecast(samples, NOW, span, goals)
    assert found.why_none is None
    assert found.fill_rate_bytes_per_s is not None and found.fill_rate_bytes_per_s <= 0
    assert found.min_free_at is None
    assert found.full_at is None
    assert found.first_crossing() is None


# --- a prune in the window ------------------------------------------------------------


@st.composite
def pruned(draw: st.DrawFn, first_kind: SampleKind):
    """A steady fill whose window also holds samples from before a prune (any free space)."""
    fill = draw(steady_fills(first_kind=first_kind))
    spacing = fill.samples[1].ts - fill.samples[0].ts
    count = draw(st.integers(1, len(fill.samples)))
    gap = spacing * draw(st.floats(0.05, 1.0))
    first_ts = fill.samples[0].ts - gap * count
    frees = draw(st.lists(st.integers(0, fill.size), min_size=count, max_size=count))
    kinds = draw(st.lists(ongoing, min_size=count, max_size=count))
    before = [
        Sample(ts=first_ts + gap * i, kind=kinds[i], disk_size=fill.size, disk_free=frees[i])
        for i in range(count)
    ]
    window = fill.now - first_ts + 1.0
    return fill, before, window


@PROPERTY
@given(drawn=pruned(first_kind=SampleKind.AFTER))
def test_the_line_starts_again_at_a_prunes_after_sample(drawn):
    fill, before, window = drawn
    history = before + fill.samples
    assert current_line(history, fill.now, window) == fill.samples
    found = forecast(history, fill.now, window, fill.goals)
    assert found == forecast(fill.samples, fill.now, window, fill.goals)
    assert found.why_none is None
    assert within(found.min_free_at, fill.min_free_at, fill.last_ts, 0.05)


@PROPERTY
@given(drawn=pruned(first_kind=SampleKind.WATCH), data=st.data())
def test_a_jump_in_free_space_without_a_prune_of_ours_starts_the_line_again(drawn, data):
    fill, before, window = drawn
    first = fill.samples[0]
    assert first.disk_free is not None
    # someone else's prune: free space rose by more than JUMP_PART of the disk
    jump = int(JUMP_PART * fill.size) + 1
    lift = max(0, jump - first.disk_free)
    if lift:  # the fill starts too low to jump to: lift it (a steady fill still)
        fill = Fill(
            samples=[replace(s, disk_free=(s.disk_free or 0) + lift) for s in fill.samples],
            goals=fill.goals,
            size=fill.size,
            now=fill.now,
            window_s=fill.window_s,
            rate=fill.rate,
            min_free_at=fill.min_free_at + lift / fill.rate,
            full_at=fill.full_at + lift / fill.rate,
        )
    low = data.draw(st.integers(0, first.disk_free + lift - jump))
    before[-1] = replace(before[-1], kind=SampleKind.WATCH, disk_free=low)
    history = before + fill.samples
    assert current_line(history, fill.now, window) == fill.samples
    found = forecast(history, fill.now, window, fill.goals)
    assert found == forecast(fill.samples, fill.now, window, fill.goals)
    assert within(found.min_free_at, fill.min_free_at, fill.last_ts, 0.05)


def line_of(frees: list[int], kinds: list[SampleKind], size: int = 100 * GIB) -> list[Sample]:
    return [
        Sample(ts=NOW - 600 * (len(frees) - 1 - i), kind=kind, disk_size=size, disk_free=free)
        for i, (free, kind) in enumerate(zip(frees, kinds, strict=True))
    ]


W, B, A = SampleKind.WATCH, SampleKind.BEFORE, SampleKind.AFTER


def test_a_prune_freeing_less_than_a_jump_still_starts_the_line_again():
    # 1% of the disk freed: no jump, but the AFTER sample says a prune ran
    samples = line_of(
        [50 * GIB, 45 * GIB, 40 * GIB, 41 * GIB, 41 * GIB, 41 * GIB], [W, W, B, A, W, W]
    )
    assert current_line(samples, NOW, WINDOW) == samples[3:]
    found = forecast(samples, NOW, WINDOW, Goals())
    assert found.samples == 3
    assert found.full_at is None  # flat since the prune


def test_a_rise_below_a_jump_without_a_prune_keeps_the_line():
    samples = line_of([50 * GIB, 45 * GIB, 46 * GIB, 41 * GIB, 36 * GIB], [W] * 5)
    assert current_line(samples, NOW, WINDOW) == samples
    assert forecast(samples, NOW, WINDOW, Goals()).samples == 5


def test_a_rise_of_exactly_a_jump_keeps_the_line_and_one_byte_more_breaks_it():
    size = 100 * GIB
    jump = int(JUMP_PART * size)
    kept = line_of([50 * GIB, 45 * GIB, 45 * GIB + jump, 40 * GIB], [W] * 4, size)
    broken = line_of([50 * GIB, 45 * GIB, 45 * GIB + jump + 1, 40 * GIB], [W] * 4, size)
    assert current_line(kept, NOW, WINDOW) == kept
    assert current_line(broken, NOW, WINDOW) == broken[2:]


def test_the_line_starts_at_the_last_of_several_prunes():
    samples = line_of([50, 60, 55, 50, 70, 65, 60, 55], [W, A, W, B, A, W, W, W])
    assert current_line(samples, NOW, WINDOW) == samples[4:]


def test_a_disk_whose_size_moves_a_little_keeps_its_line():
    """On ZFS a dataset's size is its used space plus the pool's free space: it moves at
    every sample, by far less than a jump, and the line holds."""
    frees = [50 * GIB - n * GIB for n in range(6)]
    samples = [
        replace(s, disk_size=100 * GIB - n * 100 * 1024**2)
        for n, s in enumerate(line_of(frees, [W] * 6))
    ]
    assert current_line(samples, NOW, WINDOW) == samples


def test_a_disk_of_another_size_starts_the_line_again_and_is_not_read_as_a_fall():
    """Docker's data moved to a smaller disk (or the disk was resized): 400 GB free of 500,
    then 80 GB free of 100 with min_free 15% met. Read as one line, the drop would be a fill
    far faster than any build's, and a forecast run would prune the whole cache."""
    goals = Goals(min_free=FreeGoal(percent=15))
    big = line_of([400 * GIB] * 5, [W] * 5, size=500 * GIB)
    small = line_of([80 * GIB] * 4, [W] * 4, size=100 * GIB)
    samples = [replace(s, ts=s.ts - 4 * 600) for s in big] + small
    assert current_line(samples, NOW, WINDOW) == small
    found = forecast(samples, NOW, WINDOW, goals)
    assert found.samples == 4 and found.why_none is None and found.full_at is None
    told = verdict(goals, CRITICAL, samples[-1], found, HORIZON)
    assert told.act == Act.NOTHING


@pytest.mark.parametrize(("rc", "kinds"), [(0, [B, A]), (75, [B, W]), (1, [B, W])])
def test_only_a_stage_that_pruned_starts_the_line_again(rc, kinds):
    """A stage the host's guard refused (75) or Docker failed (1) freed nothing: the run's
    last measure continues the line instead of wiping the trend for half an hour."""
    stage = Step(name="stage 1", command="docker builder prune", rc=rc, duration_s=1.0)
    outcome = succeeded_outcome(
        steps=(stage,), disk_size=100 * GIB, disk_free_before=40 * GIB, disk_free_after=40 * GIB
    )
    assert [sample.kind for sample in run_samples(outcome, NOW)] == kinds


# --- no line -------------------------------------------------------------------------


@given(count=st.integers(0, MIN_SAMPLES - 1), spacing=st.floats(1.0, HOUR))
def test_too_few_samples_give_no_line_and_say_how_many(count: int, spacing: float):
    samples = [
        Sample(ts=NOW - spacing * i, kind=W, disk_size=GIB * 100, disk_free=GIB * (10 + i))
        for i in range(count)
    ]
    found = forecast(samples, NOW, WINDOW, Goals())
    assert found.why_none is not None
    assert f"{count} samples" in found.why_none and f"{MIN_SAMPLES} needed" in found.why_none
    assert found.samples == count
    assert found.fill_rate_bytes_per_s is None and found.min_free_at is None
    assert found.full_at is None and found.first_crossing() is None


def test_samples_outside_the_window_or_without_free_space_do_not_count():
    inside = [Sample(ts=NOW - 600, kind=W, disk_size=100 * GIB, disk_free=10 * GIB)]
    old = [Sample(ts=NOW - WINDOW - 1, kind=W, disk_size=100 * GIB, disk_free=20 * GIB)]
    later = [Sample(ts=NOW + 1, kind=W, disk_size=100 * GIB, disk_free=5 * GIB)]
    failed = [Sample(ts=NOW - 300, kind=W, disk_size=100 * GIB), Sample(ts=NOW, kind=W)]
    found = forecast(inside + old + later + failed, NOW, WINDOW, Goals())
    assert found.samples == 1
    assert found.why_none == f"1 samples since the last prune in the window; {MIN_SAMPLES} needed"


def test_a_prune_leaving_too_few_samples_since_gives_no_line():
    samples = line_of(
        [50 * GIB, 45 * GIB, 40 * GIB, 35 * GIB, 60 * GIB, 59 * GIB], [W] * 4 + [A, W]
    )
    found = forecast(samples, NOW, WINDOW, Goals())
    assert found.samples == 2
    assert found.why_none is not None and "since the last prune" in found.why_none


@given(
    count=st.integers(MIN_SAMPLES, 30),
    part=st.floats(0.0, 0.99),
    window=st.floats(60.0, 7 * 24 * HOUR),
)
def test_samples_spanning_too_little_of_the_window_give_no_line_and_say_so(
    count: int, part: float, window: float
):
    span = window * MIN_SPAN_PART * part
    samples = [
        Sample(ts=NOW - span * i / (count - 1), kind=W, disk_size=TIB, disk_free=GIB * (1 + i))
        for i in range(count)
    ]
    found = forecast(samples, NOW, window, Goals())
    assert found.why_none is not None and "span" in found.why_none
    assert found.samples == count
    assert found.fill_rate_bytes_per_s is None and found.full_at is None


def test_three_samples_over_half_an_hour_of_six_hours_are_a_line():
    samples = [
        Sample(ts=NOW - 900 * (2 - i), kind=W, disk_free=(3 - i) * 10 * GIB) for i in range(3)
    ]
    assert samples[-1].ts - samples[0].ts == WINDOW * MIN_SPAN_PART
    found = forecast(samples, NOW, WINDOW, Goals())
    assert found.why_none is None
    assert found.full_at is not None and abs(found.full_at - (NOW + 900)) < 1e-3


# --- the cache's line ----------------------------------------------------------------


@PROPERTY
@given(fill=steady_fills(), growth=st.floats(0.05, 1.0), room=st.floats(1.0, 30.0))
def test_a_growing_cache_is_forecast_within_5_percent_of_reaching_max_cache(
    fill: Fill, growth: float, room: float
):
    # the cache grows by part of what the disk fills by, and reaches max_cache `room` spans on
    cache_rate = fill.rate * growth
    span = fill.last_ts - fill.samples[0].ts
    cache_last = GIB + cache_rate * span
    max_cache = int(cache_last + cache_rate * span * room)
    samples = [
        Sample(
            ts=s.ts,
            kind=s.kind,
            disk_size=s.disk_size,
            disk_free=s.disk_free,
            cache=round(cache_last - cache_rate * (fill.last_ts - s.ts)),
        )
        for s in fill.samples
    ]
    goals = Goals(max_cache=max_cache, min_free=fill.goals.min_free)
    found = forecast(samples, fill.now, fill.window_s, goals)
    true = fill.last_ts + (max_cache - cache_last) / cache_rate
    assert found.cache_rate_bytes_per_s is not None
    assert abs(found.cache_rate_bytes_per_s - cache_rate) <= 1e-3 * cache_rate
    assert within(found.max_cache_at, true, fill.last_ts, 0.05)
    assert found.first_crossing() == min(found.max_cache_at, found.min_free_at)  # type: ignore[type-var]


def test_a_shrinking_or_steady_cache_never_reaches_max_cache():
    frees = [50 * GIB, 45 * GIB, 40 * GIB]
    for caches in ([5 * GIB, 4 * GIB, 3 * GIB], [5 * GIB] * 3):
        samples = [
            Sample(ts=NOW - 900 * (2 - i), kind=W, disk_free=free, cache=cache)
            for i, (free, cache) in enumerate(zip(frees, caches, strict=True))
        ]
        found = forecast(samples, NOW, WINDOW, Goals(max_cache=10 * GIB))
        assert found.max_cache_at is None


def test_without_max_cache_or_enough_cache_samples_there_is_no_cache_crossing():
    samples = [
        Sample(ts=NOW - 900 * (2 - i), kind=W, disk_free=(50 - i) * GIB, cache=i * GIB)
        for i in range(3)
    ]
    assert forecast(samples, NOW, WINDOW, Goals()).max_cache_at is None
    rate = forecast(samples, NOW, WINDOW, Goals()).cache_rate_bytes_per_s
    assert rate is not None and abs(rate - GIB / 900) < 1e-3
    samples[0] = Sample(ts=samples[0].ts, kind=W, disk_free=samples[0].disk_free)
    found = forecast(samples, NOW, WINDOW, Goals(max_cache=GIB * 10))
    assert found.cache_rate_bytes_per_s is None and found.max_cache_at is None


# --- ahead_goals ---------------------------------------------------------------------


def filling(rate: float, cache_rate: float | None = None, **crossings: float) -> Forecast:
    return Forecast(
        samples=10,
        window_s=WINDOW,
        fill_rate_bytes_per_s=rate,
        cache_rate_bytes_per_s=cache_rate,
        **crossings,
    )


RATE = 1024**2  # 1 MiB/s: 14 GiB over the 4 h horizon
FILL = int(RATE * HORIZON)


def test_ahead_min_free_is_min_free_plus_the_fill_over_the_horizon():
    ahead = ahead_goals(Goals(min_free=FreeGoal(size=20 * GIB)), filling(RATE), HORIZON, TIB)
    assert ahead == Goals(min_free=FreeGoal(size=20 * GIB + FILL))


def test_ahead_of_a_percentage_min_free_is_its_bytes_plus_the_fill():
    ahead = ahead_goals(Goals(min_free=FreeGoal(percent=10)), filling(RATE), HORIZON, 1000 * GIB)
    assert ahead == Goals(min_free=FreeGoal(size=100 * GIB + FILL))


def test_ahead_without_min_free_wants_room_for_the_fill_alone():
    ahead = ahead_goals(Goals(), filling(RATE), HORIZON, TIB)
    assert ahead == Goals(min_free=FreeGoal(size=FILL))


def test_ahead_of_a_disk_not_filling_keeps_the_goals():
    goals = Goals(max_cache=10 * GIB, min_free=FreeGoal(size=20 * GIB))
    assert ahead_goals(goals, filling(-RATE, -RATE), HORIZON, TIB) == goals
    assert ahead_goals(Goals(), filling(0.0), HORIZON, TIB) == Goals()


def test_ahead_max_cache_is_less_the_caches_own_growth_over_the_horizon():
    found = filling(RATE, RATE / 4)
    ahead = ahead_goals(Goals(max_cache=10 * GIB), found, HORIZON, TIB)
    assert ahead.max_cache == int(10 * GIB - RATE / 4 * HORIZON)


def test_ahead_max_cache_is_less_the_disks_fill_when_the_caches_growth_is_unknown():
    ahead = ahead_goals(Goals(max_cache=20 * GIB), filling(RATE), HORIZON, TIB)
    assert ahead.max_cache == 20 * GIB - FILL


def test_ahead_max_cache_never_falls_below_nothing():
    ahead = ahead_goals(Goals(max_cache=GIB), filling(RATE), HORIZON, TIB)
    assert ahead.max_cache == 0


def test_ahead_of_a_percentage_of_an_unknown_disk_keeps_the_percentage():
    goals = Goals(min_free=FreeGoal(percent=10))
    assert ahead_goals(goals, filling(RATE), HORIZON, None) == goals


@PROPERTY
@given(
    size=st.integers(100 * GIB, 64 * TIB),
    used_part=st.floats(0.1, 0.95),
    cache_part=st.floats(0.01, 1.0),
    min_free_part=st.one_of(st.none(), st.floats(0.01, 0.5)),
    max_cache_part=st.one_of(st.none(), st.floats(0.0, 1.5)),
    rate=st.floats(1.0, 1e9),
    cache_growth=st.one_of(st.none(), st.floats(0.0, 1.0)),
)
def test_the_stage_2_bound_ahead_is_never_above_the_plain_goals_bound(
    size, used_part, cache_part, min_free_part, max_cache_part, rate, cache_growth
):
    free = int(size * (1 - used_part))
    cache = int((size - free) * cache_part)
    measure = Measure(size, free, cache)
    goals = Goals(
        max_cache=None if max_cache_part is None else int(cache * max_cache_part),
        min_free=None if min_free_part is None else FreeGoal(size=int(size * min_free_part)),
    )
    cache_rate = None if cache_growth is None else rate * cache_growth
    ahead = ahead_goals(goals, filling(rate, cache_rate), HORIZON, size)
    plain = keep_storage_bytes(goals, measure)
    bound = keep_storage_bytes(ahead, measure)
    if plain is not None:
        # what the plain goals prune, the ahead goals prune at least as far
        assert bound is not None and bound <= plain
        # room for the fill: a free-space goal missed alone is pruned further ahead
        free_short = assess(goals, measure).free_short
        if plain > 0 and free_short and goals.max_cache is None:
            assert bound < plain


def test_a_disk_meeting_its_goals_gets_a_stage_2_bound_only_ahead():
    goals = Goals(max_cache=20 * GIB, min_free=FreeGoal(size=50 * GIB))
    measure = Measure(TIB, 60 * GIB, 15 * GIB)
    ahead = ahead_goals(goals, filling(RATE), HORIZON, TIB)
    assert keep_storage_bytes(goals, measure) is None
    # 50 GiB + the fill (14 GiB) wanted free, ~4 GiB short: the cache 15 -> ~11 GiB; but
    # max_cache less the fill is lower still (~6 GiB)
    assert keep_storage_bytes(ahead, measure) == 20 * GIB - FILL
    assert keep_storage_bytes(Goals(min_free=goals.min_free), measure) is None
    ahead_free = ahead_goals(Goals(min_free=goals.min_free), filling(RATE), HORIZON, TIB)
    assert keep_storage_bytes(ahead_free, measure) == 15 * GIB - (50 * GIB + FILL - 60 * GIB)


# --- verdict -------------------------------------------------------------------------


def sample(free: int, cache: int | None, size: int = TIB) -> Sample:
    return Sample(ts=NOW, kind=W, disk_size=size, disk_free=free, cache=cache)


GOALS = Goals(min_free=FreeGoal(size=50 * GIB))
CRITICAL = 99.0  # a TiB disk with 40 GiB free is 96% used: under it


def test_a_sample_missing_min_free_with_enough_cache_asks_for_a_prune_now():
    told = verdict(GOALS, CRITICAL, sample(40 * GIB, 30 * GIB), None, HORIZON)
    assert told.act == Act.PRUNE
    assert told.goals == GOALS
    assert told.reason == f"{human_size(10 * GIB)} short of its goals"


def test_a_sample_missing_min_free_with_almost_no_cache_says_the_cache_is_too_small():
    told = verdict(GOALS, CRITICAL, sample(40 * GIB, 200 * 1024**2), None, HORIZON)
    assert told.act == Act.CACHE_TOO_SMALL
    assert told.goals is None
    assert "cache is only" in told.reason


def test_a_cache_holding_the_whole_shortfall_helps_however_small():
    told = verdict(GOALS, CRITICAL, sample(50 * GIB - 1024**2, 2 * 1024**2), None, HORIZON)
    assert told.act == Act.PRUNE
    assert helps(HELPS_BYTES, 10 * GIB) and not helps(HELPS_BYTES - 1, 10 * GIB)
    assert helps(None, 10 * GIB)


def test_a_cache_over_max_cache_asks_for_a_prune_even_when_small():
    goals = Goals(max_cache=GIB // 2)
    told = verdict(goals, CRITICAL, sample(500 * GIB, GIB), None, HORIZON)
    assert told.act == Act.PRUNE and told.goals == goals


def test_a_cache_over_max_cache_is_pruned_though_the_disk_is_short_more_than_it_holds():
    # 10 GiB short of min_free, 200 MiB of cache: too small for that, but over max_cache
    goals = Goals(max_cache=100 * 1024**2, min_free=FreeGoal(size=50 * GIB))
    told = verdict(goals, CRITICAL, sample(40 * GIB, 200 * 1024**2), None, HORIZON)
    assert told.act == Act.PRUNE and told.goals == goals


def test_a_disk_used_at_critical_percent_asks_for_a_prune_without_goals():
    size = 100 * GIB
    at = verdict(Goals(), 90, sample(10 * GIB, 5 * GIB, size), None, HORIZON)
    under = verdict(Goals(), 90, sample(10 * GIB + 1, 5 * GIB, size), None, HORIZON)
    assert at.act == Act.PRUNE
    assert under.act == Act.NOTHING


@PROPERTY
@given(
    size=st.integers(1, 64 * TIB),
    free_part=st.floats(0.0, 1.0),
    critical=st.floats(50.0, 100.0),
)
def test_the_watch_sees_a_critical_disk_as_the_planner_does(size, free_part, critical):
    free = round(size * free_part)
    measure_sample = sample(free, None, size)
    told = verdict(Goals(), critical, measure_sample, None, HORIZON)
    planner_prunes = unconfirmed(Goals(), critical, measure_sample.measure) is None
    assert (told.act == Act.PRUNE) == planner_prunes


def test_a_forecast_crossing_within_the_horizon_starts_a_run_with_the_ahead_goals():
    found = filling(RATE, min_free_at=NOW + 3 * HOUR, full_at=NOW + 20 * HOUR)
    told = verdict(GOALS, CRITICAL, sample(100 * GIB, 30 * GIB), found, HORIZON)
    assert told.act == Act.FORECAST
    assert told.goals == ahead_goals(GOALS, found, HORIZON, TIB)
    assert "~3.0 h" in told.reason


def test_a_forecast_without_goals_starts_the_age_prune_alone():
    """The host's guard allows stage 2 only to a target with goals (`hosts add`): a run
    aimed at room for the horizon would be denied, and fail every critical_interval_s."""
    found = filling(RATE, min_free_at=NOW + HOUR, full_at=NOW + HOUR)  # min_free: 0
    measured = sample(12 * GIB, 30 * GIB)  # 14 GiB would fill over the horizon
    told = verdict(Goals(), CRITICAL, measured, found, HORIZON)
    assert told.act == Act.FORECAST and told.goals == Goals()
    assert plan(told.goals, measured.measure).next == Next.DONE


def test_a_cache_crossing_within_the_horizon_starts_a_run_too():
    goals = Goals(max_cache=40 * GIB)
    found = filling(RATE, RATE, max_cache_at=NOW + HOUR)
    told = verdict(goals, CRITICAL, sample(500 * GIB, 30 * GIB), found, HORIZON)
    assert told.act == Act.FORECAST
    assert told.goals == ahead_goals(goals, found, HORIZON, TIB)


def test_a_forecast_crossing_beyond_the_horizon_asks_for_nothing():
    found = filling(RATE, min_free_at=NOW + HORIZON + 1, full_at=NOW + 20 * HOUR)
    told = verdict(GOALS, CRITICAL, sample(100 * GIB, 30 * GIB), found, HORIZON)
    assert told.act == Act.NOTHING and told.goals is None
    edge = filling(RATE, min_free_at=NOW + HORIZON)
    assert verdict(GOALS, CRITICAL, sample(100 * GIB, 30 * GIB), edge, HORIZON).act == Act.FORECAST


def test_no_forecast_or_one_without_crossings_asks_for_nothing():
    for found in (None, filling(-RATE)):
        told = verdict(GOALS, CRITICAL, sample(100 * GIB, 30 * GIB), found, HORIZON)
        assert told.act == Act.NOTHING and told.goals is None


def test_a_forecast_crossing_with_almost_no_cache_asks_for_nothing():
    found = filling(RATE, min_free_at=NOW + HOUR)
    told = verdict(GOALS, CRITICAL, sample(60 * GIB, 100 * 1024**2), found, HORIZON)
    assert told.act == Act.NOTHING
    assert "cache is only" in told.reason


def test_a_missed_goal_comes_before_any_forecast():
    found = filling(RATE, min_free_at=NOW + HOUR)
    told = verdict(GOALS, CRITICAL, sample(40 * GIB, 30 * GIB), found, HORIZON)
    assert told.act == Act.PRUNE and told.goals == GOALS


# --- the worked example of docs/watch.md -----------------------------------------------


def test_the_worked_example_holds_free_space_near_its_aim_with_a_run_every_half_hour():
    """docs/watch.md, "A worked example": a 200 GB host, min_free 30 GB, 25 GB of young
    cache, builds eating 2.4 GB an hour, a measure every 5 minutes. The first forecast run
    comes at 11:05 and keeps 24.9 GB of cache; each prune starts a new line, which needs 30
    minutes of samples, so a run follows every half hour (not every critical_interval_s),
    1.2 GB each time, until the cache left is too small to help."""
    gb, minute = 10**9, 60.0
    size, rate = 200 * gb, 2.4 * gb / HOUR
    goals = Goals(min_free=FreeGoal(size=30 * gb))
    ts, free, cache = 4 * HOUR, 42.1 * gb + rate * 6 * HOUR, 25 * gb
    samples: list[Sample] = []
    runs: list[tuple[float, int, float]] = []  # (start, --keep-storage, free after)
    while ts < 24 * HOUR:
        measured = Sample(
            ts=ts, kind=SampleKind.WATCH, disk_size=size, disk_free=round(free), cache=cache
        )
        samples.append(measured)
        told = verdict(goals, 90.0, measured, forecast(samples, ts, WINDOW, goals), HORIZON)
        if told.act != Act.NOTHING and (not runs or ts - runs[-1][0] >= 15 * minute):
            assert told.act == Act.FORECAST and told.goals is not None
            keep = keep_storage_bytes(told.goals, measured.measure)
            assert keep is not None
            free, cache = free + cache - keep, keep
            after = replace(measured, kind=SampleKind.AFTER, disk_free=round(free), cache=cache)
            samples += [replace(measured, kind=SampleKind.BEFORE), after]
            runs.append((ts, keep, free))
        ts, free = ts + 5 * minute, free - rate * 5 * minute
    assert runs[0][:2] == (11 * HOUR + 5 * minute, 24_900_000_000)
    assert [b[0] - a[0] for a, b in pairwise(runs)] == [30 * minute] * 20
    assert all(round(a[1] - b[1], -7) == 1.2 * gb for a, b in pairwise(runs))
    assert all(round(after / gb, 1) == 39.6 for _, _, after in runs)
    assert runs[-1][0] == 21 * HOUR + 5 * minute
