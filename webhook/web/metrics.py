"""GET /metrics in Prometheus text, right across gunicorn workers.

Counters (decisions, finished prunes, reclaimed bytes, durations) are counted by
prometheus_client; under gunicorn it runs in multiprocess mode
(PROMETHEUS_MULTIPROC_DIR, set by gunicorn.conf.py), so every worker's counts
add up whichever worker is scraped. Gauges of the state (in flight, last
success, next eligible) are read from the SQLite row at scrape time, so they
are right across workers and restarts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

from flask import Blueprint, Response, current_app
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from webhook.core.decision import Action
from webhook.core.outcome import RunOutcome

bp = Blueprint("metrics", __name__)
DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def source_kind(source: str) -> str:
    """`watchdog:build-1:/` -> `watchdog`: a label must not grow with the callers."""
    return source.partition(":")[0]


# gauge name, key of report.state_gauges, help
STATE_GAUGES = (
    ("prunehook_last_success_timestamp_seconds", "last_success_ts", "end of the last good prune"),
    ("prunehook_last_run_timestamp_seconds", "last_run_ts", "start of the last prune"),
    ("prunehook_next_eligible_timestamp_seconds", "next_eligible_ts", "when a prune may start"),
    ("prunehook_last_reclaimed_bytes", "last_reclaimed_bytes", "bytes the last prune reclaimed"),
)


class StateCollector(Collector):
    """Gauges read from the state row at scrape time."""

    def __init__(self, read_gauges: Callable[[], dict[str, Any]]):
        self.read_gauges = read_gauges

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = self.read_gauges()
        can_run, in_flight = float(state["can_run"]), float(state["in_flight"])
        yield GaugeMetricFamily("prunehook_enabled", "1 when prunes may run", value=can_run)
        yield GaugeMetricFamily("prunehook_in_flight", "prunes in flight", value=in_flight)
        for name, key, help_text in STATE_GAUGES:
            if state.get(key) is not None:
                yield GaugeMetricFamily(name, help_text, value=float(state[key]))


class Metrics:
    def __init__(self, read_gauges: Callable[[], dict[str, Any]]):
        self.registry = CollectorRegistry()
        self.state = StateCollector(read_gauges)
        self.registry.register(self.state)
        self.decisions = Counter(
            "prunehook_trigger_decisions", "Trigger answers by decision and caller",
            ["decision", "source"], registry=self.registry,
        )  # fmt: skip
        self._decision_children: dict[tuple[Action, str], Any] = {}
        self.prunes = Counter(
            "prunehook_prunes", "Finished prunes by outcome (ok, or the error kind)",
            ["outcome"], registry=self.registry,
        )  # fmt: skip
        self.reclaimed = Counter(
            "prunehook_reclaimed_bytes", "Build cache bytes reclaimed", registry=self.registry
        )
        self.duration = Histogram(
            "prunehook_prune_duration_seconds", "Time one remote prune took",
            buckets=DURATION_BUCKETS, registry=self.registry,
        )  # fmt: skip

    def decided(self, action: Action, source: str) -> None:
        labels = (action, source_kind(source))
        child = self._decision_children.get(labels)
        if child is None:  # looked up once per pair: `labels()` costs more than `inc()`
            child = self.decisions.labels(decision=str(action), source=labels[1])
            self._decision_children[labels] = child
        child.inc()

    def finished(self, target: str, outcome: RunOutcome) -> None:
        self.prunes.labels(outcome="ok" if outcome.ok else outcome.error_kind or "failed").inc()
        if outcome.reclaimed_bytes:
            self.reclaimed.inc(outcome.reclaimed_bytes)
        self.duration.observe(outcome.duration_s)

    def render(self) -> bytes:
        if not os.environ.get(MULTIPROC_ENV):
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(self.state)
        return generate_latest(registry)


@bp.get("/metrics")
def metrics() -> Response:
    body = current_app.extensions["prunehook.metrics"].render()
    return Response(body, content_type=CONTENT_TYPE_LATEST)
