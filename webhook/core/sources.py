"""Pure readings of each caller's payload: does it ask for a prune, and why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Verdict:
    wants_prune: bool
    source: str
    reason: str


def read_cron(ping: dict[str, Any]) -> Verdict:
    source = ping.get("source") or "cron"
    return Verdict(True, f"cron:{source}" if source != "cron" else "cron", "cron ping")


def read_watchdog(alert: dict[str, Any]) -> Verdict:
    where = f"{alert['host']}:{alert['mount']}"
    source = f"watchdog:{where}"
    if alert["status"] == "resolved":
        return Verdict(False, source, f"resolved alert for {where}: nothing to prune")
    return Verdict(True, source, f"{where} at {alert['used_percent']:g}% used")


def read_alertmanager(payload: dict[str, Any]) -> Verdict:
    firing = [alert for alert in payload["alerts"] if alert["status"] == "firing"]
    names = sorted({alert["labels"].get("alertname", "?") for alert in firing})
    source = f"alertmanager:{payload['receiver']}"
    if payload["status"] == "resolved" or not firing:
        return Verdict(False, source, "resolved notification: nothing to prune")
    return Verdict(True, source, f"{len(firing)} firing: {', '.join(names)}"[:300])
