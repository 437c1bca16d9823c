"""The watch: a cron ping measures each watched target whose last measure is old enough,
keeps the sample, redraws the target's forecast and, when the sample or the forecast asks
for it, starts a run (DESIGN.md, "Watching and forecasting").

A measure is the run's read-only probes (`df` and the build cache: `docker buildx du` where
a run has found buildx on the target, else `docker system df`) on one session, in a
pool of `max_parallel` threads of its own, so the ping answers at once. Measuring is never
a prune: it sets no interval, and the host's guard lets its probes through. What to do
with a sample is the core's pure answer (`forecast`, `verdict`); a run's own measures are
samples too (`run_finished`), so the line also learns from every prune.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from contextlib import closing
from dataclasses import asdict, dataclass, replace
from enum import StrEnum

from webhook.core.disk import Measure
from webhook.core.forecast import (
    Act,
    Forecast,
    Sample,
    SampleKind,
    Verdict,
    forecast,
    run_samples,
    verdict,
)
from webhook.core.outcome import RunOutcome
from webhook.core.targets import Target
from webhook.listeners import tell
from webhook.pool import Pool
from webhook.remote.session import Stopped
from webhook.runs import HostAccess, RunSteps, probe_limit_s
from webhook.store import StoreUnavailable

log = logging.getLogger(__name__)


class Measurement(StrEnum):
    """How a measure went: the `result` label of prunehook_measurements_total."""

    OK = "ok"  # the disk was read (the cache may not have been)
    FAILED = "failed"


@dataclass(frozen=True)
class Watched:
    """What one measure found and did: metrics and notices read it."""

    target: Target
    sample: Sample
    forecast: Forecast | None = None
    verdict: Verdict | None = None
    # the run the verdict started, if it did
    run_id: int | None = None
    # the previous sample asked the same (a notice is told once, not at every measure)
    repeated: bool = False

    @property
    def result(self) -> Measurement:
        return Measurement.OK if self.sample.disk_free is not None else Measurement.FAILED


MeasuredListener = Callable[[Watched], object]
# claims a run for a target (with the goals it prunes towards, and the forecast it acts on
# when it starts ahead of one) on the watch's word, bounded as a critical start is; the
# run's id when it started
StartRun = Callable[[Target, Verdict, Forecast | None], int | None]


def measure_limit_s(target: Target) -> float:
    """The longest one measure takes: connecting and three probes at their limits (df, and
    `docker system df` after a `docker buildx du` that failed)."""
    return 3 * target.ssh.connect_timeout_s + 3 * probe_limit_s(target)


class Watch:
    def __init__(
        self,
        access: HostAccess,
        max_parallel: int,
        start: StartRun,
        listeners: Sequence[MeasuredListener] = (),
    ):
        self.access = access
        self.start = start
        self.listeners = listeners
        # measures by target: a ping never queues one that is queued or under way
        self._pool = Pool(max_parallel, "measure")

    def sweep(self, targets: Iterable[Target]) -> dict[str, Future[Watched]]:
        """Queue a measure of each watched target whose last one is old enough and that no
        one is measuring; the measures queued, by name. Raises StoreUnavailable."""
        now = self.access.clock()
        watched = {
            t.name: t
            for t in targets
            if t.policy.watch_interval_s > 0 and not self._pool.busy(t.name)
        }
        if not watched:
            return {}
        due = {name: t.policy.watch_interval_s for name, t in watched.items()}
        hold_s = max(measure_limit_s(t) for t in watched.values())
        claimed = self.access.store.claim_measures(due, now, hold_s)
        return {
            name: self._pool.submit(name, self.measure, watched[name], now + hold_s)
            for name in claimed
        }

    def measure(self, target: Target, held: float | None = None) -> Watched:
        """Measure `target` now and act on it; `held`: the end of the hold it was claimed
        with. Never raises. The sample's time is the measure's start, when `df` ran."""
        started = self.access.clock()
        try:
            found = self._probe(target)
        except Exception:
            log.exception("measure of %s: the command runner raised", target.name)
            found = Measure()
        sample = Sample(ts=started, kind=SampleKind.WATCH, **asdict(found))
        return self.observe(target, [sample], act=True, held=held, ended=self.access.clock())

    def _probe(self, target: Target) -> Measure:
        with closing(self.access.open_session(target)) as session:
            steps = RunSteps(session, target, known=self.access.versions.get(target.name))
            try:
                return steps.measure("watch")
            except Stopped:  # the connection was lost: nothing was read
                why = steps.failure.error if steps.failure else "the connection was lost"
                log.warning("measure of %s failed: %s", target.name, why)
                return Measure()
            finally:
                for note in steps.notes:
                    log.warning("measure of %s: %s", target.name, note)

    def run_finished(self, target: Target, outcome: RunOutcome) -> None:
        """A run's measures that read the disk are samples too (the run listener)."""
        samples = [s for s in run_samples(outcome, self.access.clock()) if s.disk_free is not None]
        if samples:
            self.observe(target, samples, act=False)

    def observe(
        self,
        target: Target,
        samples: list[Sample],
        act: bool,
        held: float | None = None,
        ended: float | None = None,
    ) -> Watched:
        """Keep `samples` (ending the measure's hold, `held`) and redraw the forecast; with
        `act` (the watch's own measure, not a run's, which `ended` then) they are the host's
        last measurement, and what the last asks for starts."""
        policy = target.policy
        sample = samples[-1]
        watched = Watched(target, sample)
        # a measure that read nothing is no sample (a host down for days of pings would push
        # every real one out), and its hold lasts a watch interval: every process and replica
        # tries the host again then, as a healthy one is measured, not at every ping
        readings = [s for s in samples if not s.measure.empty]
        failed = held is not None and watched.result == Measurement.FAILED
        rest_until = sample.ts + policy.watch_interval_s if failed else None
        # drawn when the measure ended: a run that finished while it ran is on the line
        now = sample.ts if ended is None else ended
        try:
            window = policy.forecast_window_s
            recent, found = self.access.store.add_samples(
                target.name,
                readings,
                now - window,
                lambda kept: forecast(kept, now, window, policy.goals),
                latest=act,
                ended=ended,
                held=held,
                rest_until=rest_until,
            )
            watched = replace(watched, forecast=found)
            if act and watched.result == Measurement.OK:
                watched = self._act(watched, recent)
        except StoreUnavailable as error:
            log.error("measure of %s: the state database failed: %s", target.name, error)
        if act:  # not a run's measures: the run is told of itself
            tell(self.listeners, watched, log=log)
        return watched

    def _act(self, watched: Watched, recent: Sequence[Sample]) -> Watched:
        policy = watched.target.policy
        horizon = policy.forecast_horizon_s
        told = verdict(
            policy.goals, policy.critical_percent, watched.sample, watched.forecast, horizon
        )
        previous = [s for s in recent if s.ts < watched.sample.ts and s.disk_free is not None]
        repeated = bool(previous) and (
            verdict(policy.goals, policy.critical_percent, previous[-1], None, horizon).act
            == told.act
        )
        run_id = None
        if told.act in (Act.PRUNE, Act.FORECAST):
            ahead = watched.forecast if told.act == Act.FORECAST else None
            run_id = self.start(watched.target, told, ahead)
        return replace(watched, verdict=told, run_id=run_id, repeated=repeated)

    def join_all(self, timeout: float | None = None) -> None:
        """Wait for the measures this process queued (tests, the CLI, shutdown)."""
        self._pool.join_all(timeout)
