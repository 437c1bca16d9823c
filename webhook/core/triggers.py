"""Pure readings of each caller's payload: does it ask for a prune, for which hosts, and why.

A payload never chooses what runs: it names hosts, and the service looks them
up among the configured targets. Alertmanager groups may carry alerts for
several hosts, so each firing alert's own labels are read, never
`commonLabels`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from webhook.core.targets import normalize_host

DEFAULT_HOST_LABELS = ("host", "nodename", "instance")
# an Alertmanager alert labelled severity="critical" may prune inside the interval
CRITICAL_SEVERITY = "critical"
REASON_MAX = 300


class Source(StrEnum):
    """Who asked: a metrics label, so a closed set."""

    CRON = "cron"
    WATCHDOG = "watchdog"
    ALERTMANAGER = "alertmanager"
    CLI = "cli"
    # the watch's own measure: a goal missed now, or forecast to be
    WATCH = "watch"
    FORECAST = "forecast"


@dataclass(frozen=True)
class Trigger:
    """What a trigger asks for.

    `hosts` are the host values the payload names (None: it names none, so it concerns every
    target, as a cron sweep does); `names` are target names an operator chose (`?target=`,
    `--target`). `unrouted` counts firing alerts that carry none of the host labels.
    `used_percent` (our watchdog's) and `critical_hosts` (the hosts of firing Alertmanager
    alerts labelled severity="critical"; `critical` when any is) say whether the trigger is
    critical for a target (`is_critical`).
    """

    source: Source
    wants_prune: bool
    reason: str
    detail: str = ""
    hosts: tuple[str, ...] | None = None
    names: tuple[str, ...] | None = None
    unrouted: int = 0
    used_percent: float | None = None
    critical: bool = False
    critical_hosts: tuple[str, ...] = ()

    def is_critical(self, routes: frozenset[str] | None, critical_percent: float) -> bool:
        """Whether the trigger is critical for a target known by `routes` (its normalized
        names; None when every alert concerns it, as the env target alone): our watchdog
        at or above `critical_percent`, or a critical alert naming it."""
        if self.used_percent is not None and self.used_percent >= critical_percent:
            return True
        if not self.critical:
            return False
        if routes is None:
            return True
        return any(normalize_host(host) in routes for host in self.critical_hosts)

    @property
    def label(self) -> str:
        """How the run's history names its trigger: `watchdog:build-1:/`."""
        return f"{self.source}:{self.detail}" if self.detail else str(self.source)


def _bounded(text: str) -> str:
    return text if len(text) <= REASON_MAX else text[: REASON_MAX - 1] + "…"


# the usual cron ping (no source, no ?target=) reads the same every time: read once
_PLAIN_CRON_PING = Trigger(Source.CRON, True, "cron ping")


def read_cron(ping: Mapping[str, Any], names: Sequence[str] = ()) -> Trigger:
    detail = ping.get("source") or ""
    if not names and detail in ("", "cron"):
        return _PLAIN_CRON_PING
    return Trigger(
        Source.CRON,
        True,
        "cron ping",
        detail="" if detail == "cron" else detail,
        names=tuple(dict.fromkeys(names)) or None,
    )


def read_watchdog(alert: Mapping[str, Any]) -> Trigger:
    where = f"{alert['host']}:{alert['mount']}"
    hosts = (alert["host"],)
    if alert["status"] == "resolved":
        reason = f"resolved alert for {where}: nothing to prune"
        return Trigger(Source.WATCHDOG, False, _bounded(reason), where, hosts)
    used = float(alert["used_percent"])
    reason = _bounded(f"{where} at {alert['used_percent']:g}% used")
    return Trigger(Source.WATCHDOG, True, reason, where, hosts, used_percent=used)


def alert_host(labels: Mapping[str, str], host_labels: Sequence[str]) -> str | None:
    """The first of `host_labels` that the alert carries, non-empty."""
    for label in host_labels:
        value = labels.get(label)
        if isinstance(value, str) and value.strip():
            return value
    return None


def read_alertmanager(
    payload: Mapping[str, Any], host_labels: Sequence[str] = DEFAULT_HOST_LABELS
) -> Trigger:
    firing = [alert for alert in payload["alerts"] if alert["status"] == "firing"]
    receiver = payload["receiver"]
    if payload["status"] == "resolved" or not firing:
        reason = "resolved notification: nothing to prune"
        return Trigger(Source.ALERTMANAGER, False, reason, receiver, hosts=())
    found = [alert_host(alert["labels"], host_labels) for alert in firing]
    hosts = tuple(dict.fromkeys(host for host in found if host is not None))
    names = sorted({alert["labels"].get("alertname", "?") for alert in firing})
    reason = _bounded(f"{len(firing)} firing: {', '.join(names)}")
    critical = [
        host
        for alert, host in zip(firing, found, strict=True)
        if str(alert["labels"].get("severity", "")).strip().lower() == CRITICAL_SEVERITY
    ]
    return Trigger(
        Source.ALERTMANAGER,
        True,
        reason,
        receiver,
        hosts=hosts,
        unrouted=sum(host is None for host in found),
        critical=bool(critical),
        critical_hosts=tuple(dict.fromkeys(host for host in critical if host is not None)),
    )
