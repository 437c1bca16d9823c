"""What GET /metrics shows, in Prometheus text, right across gunicorn workers.

Counters are prometheus_client's, in multiprocess mode under gunicorn
(PROMETHEUS_MULTIPROC_DIR), so every worker's counts add up whichever worker is
scraped. The state's gauges are read from the stored rows at scrape time, so they
are right across workers, replicas and restarts. prometheus_client is imported at
the first count or scrape, not when the app starts.
"""

from __future__ import annotations

import glob
import os
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from webhook.core.decision import next_eligible_ts
from webhook.core.forecast import Forecast
from webhook.store import TargetRecord

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import GaugeMetricFamily

    from webhook.core.outcome import RunOutcome
    from webhook.core.targets import Target
    from webhook.service import PruneService, TriggerOutcome
    from webhook.watch import Watched

DURATION = "prunehook_prune_duration_seconds"
DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
NO_FORECAST = Forecast(samples=0, window_s=0)

# name, help, label names
COUNTERS = (
    ("prunehook_trigger_decisions", "Trigger answers by decision, caller and target",
     ("decision", "source", "target")),
    ("prunehook_unknown_hosts",
     "Hosts named by alerts that are no configured target (nothing was pruned)", ()),
    ("prunehook_prunes", "Finished prunes by target and outcome (ok, or the error kind)",
     ("target", "outcome")),
    ("prunehook_reclaimed_bytes", "Build cache bytes reclaimed", ("target",)),
    ("prunehook_freed_bytes", "Disk bytes freed by prunes, as df measured them", ("target",)),
    ("prunehook_notifications",
     "Notification messages, one per destination: sent, failed (error or timeout) or "
     "dropped (the queue was full), by reason (reclaimed, failures, disk_low, forecast) and scheme",
     ("result", "reason", "scheme")),
    ("prunehook_measurements",
     "The watch's measures of a target (watch_interval_s) by result: ok (the disk was read) or"
     " failed", ("target", "result")),
)  # fmt: skip


class Row(NamedTuple):
    """One target's stored row as a scrape reads it."""

    target: Target
    record: TargetRecord
    now: float
    enabled: bool


def _not_after(ts: float | None, now: float) -> float | None:
    # after the clock stepped back, a future time would keep `time() - x` negative, and a
    # staleness alert silent, until the clock caught up
    return None if ts is None else min(ts, now)


def _forecast(row: Row) -> Forecast:
    return row.record.forecast or NO_FORECAST


# name, help, the value of one target's row (None: no sample)
STATE_GAUGES: tuple[tuple[str, str, Callable[[Row], float | None]], ...] = (
    ("prunehook_enabled", "1 when prunes may run", lambda row: row.enabled),
    ("prunehook_in_flight", "prunes in flight", lambda row: row.record.inflight_run_id is not None),
    ("prunehook_last_success_timestamp_seconds", "end of the last good prune",
     lambda row: _not_after(row.record.last_success_ts, row.now)),
    ("prunehook_last_run_timestamp_seconds", "start of the last prune",
     lambda row: _not_after(row.record.last_started_ts, row.now)),
    ("prunehook_next_eligible_timestamp_seconds", "when a prune may start",
     lambda row: next_eligible_ts(row.record, row.target.policy)),
    ("prunehook_last_reclaimed_bytes", "bytes the last prune reclaimed",
     lambda row: row.record.last_reclaimed_bytes),
    # the last measurement of the disk holding Docker's data (df) and of the build cache
    # (docker system df), by any run; absent until a run measured them
    ("prunehook_disk_free_bytes", "free bytes on Docker's disk (df Avail)",
     lambda row: row.record.last_disk_free),
    ("prunehook_disk_size_bytes", "size of Docker's disk (df)",
     lambda row: row.record.last_disk_size),
    ("prunehook_build_cache_bytes", "build cache (docker system df)",
     lambda row: row.record.last_cache),
    # 1: max_cache and min_free were met after the last run's last stage, 0: missed; absent
    # when the target sets no goal or the last run could not measure one
    ("prunehook_goal_met", "1 when the last run met the disk goals, 0 when not",
     lambda row: row.record.last_goal_met),
    # the line through the samples since the last prune (DESIGN.md, "Watching and
    # forecasting"); absent without one, and the time absent when the disk is not filling
    ("prunehook_disk_full_at_timestamp_seconds", "when free space is forecast to reach 0",
     lambda row: _forecast(row).full_at),
    ("prunehook_disk_fill_rate_bytes_per_second",
     "how fast free space falls, from the forecast's line (negative: it rises)",
     lambda row: _forecast(row).fill_rate_bytes_per_s),
)  # fmt: skip


class StateCollector:
    """Per-target gauges read from the stored rows at scrape time (one query for all)."""

    def __init__(self, service: PruneService):
        self.service = service

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from prometheus_client.core import GaugeMetricFamily

        service = self.service
        records, now = service.store.target_records(), service.clock()
        rows = [
            Row(target, records.get(target.name) or TargetRecord(target.name), now, service.enabled)
            for target in service.fleet
        ]
        for name, help_text, value_of in STATE_GAUGES:
            family = GaugeMetricFamily(name, help_text, labels=["target"])
            for row in rows:
                value = value_of(row)
                if value is not None:
                    family.add_metric([row.target.name], float(value))
            yield family


class Metrics:
    """The counters, made with their registry when the first is needed."""

    def __init__(self, service: PruneService):
        self.state = StateCollector(service)
        self._lock = threading.Lock()
        self._registry: CollectorRegistry | None = None
        self._meters: dict[str, Any] = {}

    def _made(self) -> CollectorRegistry:
        """The registry with every counter, made on first use."""
        with self._lock:
            if self._registry is None:
                from prometheus_client import CollectorRegistry, Counter, Histogram

                registry = CollectorRegistry()
                registry.register(self.state)
                for name, help_text, labels in COUNTERS:
                    self._meters[name] = Counter(name, help_text, labels, registry=registry)
                self._meters[DURATION] = Histogram(
                    DURATION, "Time one remote prune took", ["target"],
                    buckets=DURATION_BUCKETS, registry=registry,
                )  # fmt: skip
                self._registry = registry
            return self._registry

    def meter(self, name: str) -> Any:
        """A counter of COUNTERS, or the DURATION histogram, by its name."""
        self._made()
        return self._meters[name]

    def decided(self, outcome: TriggerOutcome) -> None:
        source = outcome.trigger.source
        for result in outcome.results:
            if result.unknown_hosts:
                self.meter("prunehook_unknown_hosts").inc(result.unknown_hosts)
            self.meter("prunehook_trigger_decisions").labels(
                decision=str(result.answer), source=str(source), target=result.target or ""
            ).inc()

    def finished(self, target: Target, outcome: RunOutcome) -> None:
        kind = "ok" if outcome.ok else str(outcome.error_kind or "failed")
        self.meter("prunehook_prunes").labels(target=target.name, outcome=kind).inc()
        if outcome.reclaimed_bytes:
            self.meter("prunehook_reclaimed_bytes").labels(target=target.name).inc(
                outcome.reclaimed_bytes
            )
        # a disk that filled meanwhile (builds) measures a negative difference: no count
        if outcome.freed_bytes and outcome.freed_bytes > 0:
            self.meter("prunehook_freed_bytes").labels(target=target.name).inc(outcome.freed_bytes)
        self.meter(DURATION).labels(target=target.name).observe(outcome.duration_s)

    def measured(self, watched: Watched) -> None:
        self.meter("prunehook_measurements").labels(
            target=watched.target.name, result=str(watched.result)
        ).inc()

    def notified(self, result: str, reason: str, scheme: str) -> None:
        self.meter("prunehook_notifications").labels(result, reason, scheme).inc()

    def render(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest

        folder = os.environ.get(MULTIPROC_ENV)
        if not folder:
            return generate_latest(self._made())
        registry = CollectorRegistry()
        registry.register(WorkersCounts(folder))
        registry.register(self.state)
        return generate_latest(registry)


class WorkersCounts(NamedTuple):
    """Every worker's counts, as prometheus_client's MultiProcessCollector merges them, but
    for a file a worker has made and not yet sized: read, it failed the whole scrape, and
    for good where the worker died at that moment (prometheus/client_python#1199)."""

    folder: str

    def collect(self) -> Iterator[Any]:
        from prometheus_client.multiprocess import MultiProcessCollector

        files = [path for path in glob.glob(os.path.join(self.folder, "*.db")) if _sized(path)]
        return iter(MultiProcessCollector.merge(files, accumulate=True))


def _sized(path: str) -> bool:
    try:
        return os.path.getsize(path) > 0
    except OSError:  # gone since it was listed: a dead worker's live gauges are removed
        return False
