"""Reading payloads into triggers: which hosts an alert names, per alert."""

from __future__ import annotations

from webhook.core.triggers import Source, Trigger, read_alertmanager, read_cron, read_watchdog


def alert(status: str = "firing", **labels: str) -> dict:
    return {"status": status, "labels": {"alertname": "DiskFull", **labels}, "annotations": {}}


def group(*alerts: dict, status: str = "firing") -> dict:
    return {"status": status, "receiver": "prunehook", "alerts": list(alerts)}


def test_each_firing_alert_names_its_own_host_not_the_common_labels():
    payload = group(alert(host="build-1"), alert(instance="build-2:9100"), alert(host="build-1"))
    payload["commonLabels"] = {"host": "build-9"}
    trigger = read_alertmanager(payload)
    assert trigger.wants_prune
    assert trigger.hosts == ("build-1", "build-2:9100")
    assert trigger.source == Source.ALERTMANAGER


def test_host_labels_are_read_in_the_configured_order():
    both = alert(host="by-host", nodename="by-nodename")
    assert read_alertmanager(group(both)).hosts == ("by-host",)
    assert read_alertmanager(group(both), ("nodename", "host")).hosts == ("by-nodename",)


def test_a_firing_alert_without_a_host_label_is_counted_as_unrouted():
    trigger = read_alertmanager(group(alert(job="node"), alert(host="build-1")))
    assert (trigger.hosts, trigger.unrouted) == (("build-1",), 1)


def test_resolved_alerts_name_no_host_and_ask_for_nothing():
    trigger = read_alertmanager(group(alert("resolved", host="build-1"), status="resolved"))
    assert not trigger.wants_prune
    assert trigger.hosts == ()
    mixed = read_alertmanager(group(alert("resolved", host="build-1"), alert(host="build-2")))
    assert mixed.hosts == ("build-2",)


def test_a_watchdog_alert_names_its_host_and_its_mount_in_the_trigger():
    firing = {"host": "Build-1:22", "mount": "/", "used_percent": 97.5, "status": "firing"}
    trigger = read_watchdog(firing)
    assert (trigger.wants_prune, trigger.hosts) == (True, ("Build-1:22",))
    assert trigger.label == "watchdog:Build-1:22:/"
    assert not read_watchdog(firing | {"status": "resolved"}).wants_prune


def test_a_cron_ping_concerns_every_target_unless_names_are_given():
    assert read_cron({}).names is None
    assert read_cron({}, ["b", "a", "b"]).names == ("b", "a")
    assert read_cron({"source": "nightly"}).label == "cron:nightly"
    assert read_cron({}).label == "cron"
    assert read_cron({"source": "cron"}) == read_cron({}) == Trigger(Source.CRON, True, "cron ping")


def test_a_long_reason_is_bounded():
    many = group(*(alert(host=f"h{i}", alertname=f"Alert{i:04d}") for i in range(500)))
    assert len(read_alertmanager(many).reason) <= 300


def test_a_watchdog_alert_at_or_above_the_critical_percent_is_critical():
    trigger = read_watchdog(
        {"host": "build-1", "mount": "/", "used_percent": 95.0, "status": "firing"}
    )
    assert trigger.used_percent == 95.0
    assert trigger.is_critical(None, 95.0)
    assert not trigger.is_critical(None, 95.5)


def test_an_alert_labelled_critical_is_critical_for_the_hosts_it_names_only():
    trigger = read_alertmanager(
        group(alert(host="build-1", severity="critical"), alert(host="build-2", severity="warning"))
    )
    assert trigger.critical and trigger.critical_hosts == ("build-1",)
    assert trigger.is_critical(frozenset({"build-1"}), 95)
    assert not trigger.is_critical(frozenset({"build-2"}), 95)
    assert trigger.is_critical(None, 95)  # the env target alone: every alert concerns it


def test_an_alert_without_severity_critical_is_not_critical():
    trigger = read_alertmanager(group(alert(host="build-1", severity="page")))
    assert not trigger.critical
    assert not trigger.is_critical(None, 95)
    resolved = read_alertmanager(group(alert("resolved", host="build-1", severity="critical")))
    assert not resolved.critical
