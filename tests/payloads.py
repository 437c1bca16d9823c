"""Payloads as the real senders send them."""

WATCHDOG_ALERT = {"host": "build-1", "mount": "/var/lib/docker", "used_percent": 97.2}
ALERTMANAGER = {
    "version": "4",
    "groupKey": '{}:{alertname="BuildHostDiskFull"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "prunehook",
    "groupLabels": {"alertname": "BuildHostDiskFull"},
    "commonLabels": {"alertname": "BuildHostDiskFull", "severity": "critical"},
    "commonAnnotations": {"summary": "disk almost full"},
    "externalURL": "http://alertmanager.local:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "BuildHostDiskFull", "instance": "build-1:9100"},
            "annotations": {"summary": "/ at 96%"},
            "startsAt": "2026-11-25T01:02:03.123456789Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.local:9090/graph?g0.expr=...",
            "fingerprint": "a1b2c3d4e5f60718",
            "silenceURL": "an unknown key newer Alertmanagers send",
        }
    ],
    "someFutureKey": {"nested": True},
}
