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
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from webhook.core.decision import Answer
from webhook.core.triggers import Source
from webhook.web.context import prunehook
from webhook.web.report import TargetGauges, target_gauges

if TYPE_CHECKING:
    from webhook.core.outcome import RunOutcome
    from webhook.core.targets import Target
    from webhook.service import PruneService, TriggerOutcome

bp = Blueprint("metrics", __name__)
DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# gauge name, field of report.TargetGauges, help
STATE_GAUGES = (
    ("prunehook_last_success_timestamp_seconds", "last_success_ts", "end of the last good prune"),
    ("prunehook_last_run_timestamp_seconds", "last_run_ts", "start of the last prune"),
    ("prunehook_next_eligible_timestamp_seconds", "next_eligible_ts", "when a prune may start"),
    ("prunehook_last_reclaimed_bytes", "last_reclaimed_bytes", "bytes the last prune reclaimed"),
    # the last measurement of the disk holding Docker's data (df) and of the build cache
    # (docker system df), by any run; absent until a run measured them
    ("prunehook_disk_free_bytes", "disk_free_bytes", "free bytes on Docker's disk (df Avail)"),
    ("prunehook_disk_size_bytes", "disk_size_bytes", "size of Docker's disk (df)"),
    ("prunehook_build_cache_bytes", "build_cache_bytes", "build cache (docker system df)"),
    # 1: max_cache and min_free were met after the last run's last stage, 0: missed; absent
    # when the target sets no goal or the last run could not measure one
    ("prunehook_goal_met", "goal_met", "1 when the last run met the disk goals, 0 when not"),
)


class StateCollector(Collector):
    """Per-target gauges read from the stored rows at scrape time (one query for all)."""

    def __init__(self, service: PruneService):
        self.service = service

    def gauges(self) -> list[TargetGauges]:
        service = self.service
        records = service.store.target_records()
        now = service.clock()
        return [
            target_gauges(target, records.get(target.name), now, service.enabled)
            for target in service.fleet
        ]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        every = self.gauges()
        enabled = GaugeMetricFamily("prunehook_enabled", "1 when prunes may run", labels=["target"])
        in_flight = GaugeMetricFamily("prunehook_in_flight", "prunes in flight", labels=["target"])
        for each in every:
            enabled.add_metric([each.name], float(each.can_run))
            in_flight.add_metric([each.name], float(each.in_flight))
        yield enabled
        yield in_flight
        for name, attribute, help_text in STATE_GAUGES:
            family = GaugeMetricFamily(name, help_text, labels=["target"])
            for each in every:
                value = getattr(each, attribute)
                if value is not None:
                    family.add_metric([each.name], float(value))
            yield family


class Metrics:
    def __init__(self, service: PruneService):
        self.registry = CollectorRegistry()
        self.state = StateCollector(service)
        self.registry.register(self.state)
        self.decisions = Counter(
            "prunehook_trigger_decisions", "Trigger answers by decision, caller and target",
            ["decision", "source", "target"], registry=self.registry,
        )  # fmt: skip
        self._decision_children: dict[tuple[Answer, Source, str], Any] = {}
        self.unknown_hosts = Counter(
            "prunehook_unknown_hosts",
            "Hosts named by alerts that are no configured target (nothing was pruned)",
            registry=self.registry,
        )
        self.prunes = Counter(
            "prunehook_prunes", "Finished prunes by target and outcome (ok, or the error kind)",
            ["target", "outcome"], registry=self.registry,
        )  # fmt: skip
        self.reclaimed = Counter(
            "prunehook_reclaimed_bytes", "Build cache bytes reclaimed", ["target"],
            registry=self.registry,
        )  # fmt: skip
        self.freed = Counter(
            "prunehook_freed_bytes", "Disk bytes freed by prunes, as df measured them",
            ["target"], registry=self.registry,
        )  # fmt: skip
        self.duration = Histogram(
            "prunehook_prune_duration_seconds", "Time one remote prune took", ["target"],
            buckets=DURATION_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.notifications = Counter(
            "prunehook_notifications",
            "Notification messages, one per destination: sent, failed (error or timeout) or "
            "dropped (the queue was full), by reason (reclaimed, failures, disk_low) and scheme",
            ["result", "reason", "scheme"], registry=self.registry,
        )  # fmt: skip

    def decided(self, outcome: TriggerOutcome) -> None:
        source = outcome.trigger.source
        for result in outcome.results:
            if result.unknown_hosts:
                self.unknown_hosts.inc(result.unknown_hosts)
            labels = (result.answer, source, result.target or "")
            child = self._decision_children.get(labels)
            if child is None:  # looked up once per triple: `labels()` costs more than `inc()`
                child = self.decisions.labels(
                    decision=str(result.answer), source=str(source), target=labels[2]
                )
                self._decision_children[labels] = child
            child.inc()

    def finished(self, target: Target, outcome: RunOutcome) -> None:
        kind = "ok" if outcome.ok else str(outcome.error_kind or "failed")
        self.prunes.labels(target=target.name, outcome=kind).inc()
        if outcome.reclaimed_bytes:
            self.reclaimed.labels(target=target.name).inc(outcome.reclaimed_bytes)
        # a disk that filled meanwhile (builds) measures a negative difference: no count
        if outcome.freed_bytes and outcome.freed_bytes > 0:
            self.freed.labels(target=target.name).inc(outcome.freed_bytes)
        self.duration.labels(target=target.name).observe(outcome.duration_s)

    def notified(self, result: str, reason: str, scheme: str) -> None:
        self.notifications.labels(result=result, reason=reason, scheme=scheme).inc()

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
    return Response(prunehook().metrics.render(), content_type=CONTENT_TYPE_LATEST)
