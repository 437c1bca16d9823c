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


def alertmanager_group(alerts: int) -> dict:
    """A firing group as Alertmanager sends it for a fleet-wide rule: about 900 bytes an alert."""
    template = ALERTMANAGER["alerts"][0]
    return ALERTMANAGER | {
        "alerts": [
            template
            | {
                "labels": {
                    "alertname": "BuildHostDiskFull",
                    "instance": f"build-{n}.ci.example.internal:9100",
                    "job": "node",
                    "device": "/dev/nvme0n1p2",
                    "fstype": "ext4",
                    "mountpoint": "/var/lib/docker",
                    "severity": "critical",
                    "cluster": "ci-eu-west-1",
                },
                "annotations": {
                    "summary": f"build-{n}: /var/lib/docker at 96% used",
                    "description": "The filesystem holding Docker's data is almost full; "
                    "builds will fail once it is. prunehook prunes old BuildKit cache.",
                    "runbook_url": "https://runbooks.example/ci/build-host-disk-full",
                },
                "generatorURL": "http://prometheus.local:9090/graph?g0.expr=%28node_filesystem"
                "_avail_bytes%7Bmountpoint%3D%22%2Fvar%2Flib%2Fdocker%22%7D+%2F+node_filesystem"
                "_size_bytes%29+%3C+0.05&g0.tab=1",
                "fingerprint": f"{n:016x}",
            }
            for n in range(alerts)
        ],
    }
