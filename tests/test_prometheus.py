"""The shipped Prometheus rules and Alertmanager route (contrib/prometheus): checked by
promtool and amtool, unit-tested with `promtool test rules`, and run end to end: a real
node_exporter reads the loop disk a real dockerd keeps its data on, Prometheus evaluates
the rules, Alertmanager posts to prunehook under gunicorn, and prunehook prunes the build
host over SSH until the alert resolves by itself.
"""

from __future__ import annotations

from typing import Any

import yaml

from tests.harness.prometheus import (
    ALERTMANAGER_CONFIG,
    RULES,
    alerting_rules,
    amtool,
    load_yaml,
    promtool,
)

FILLING_UP = "DockerDataDiskFillingUp"
ALMOST_FULL = "DockerDataDiskAlmostFull"
MB = 1000**2


# -- the files as shipped ---------------------------------------------------------------


def test_promtool_accepts_the_shipped_rules():
    checked = promtool("check", "rules", str(RULES))

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 2 rules found" in checked.stdout


def test_amtool_accepts_the_shipped_alertmanager_configuration_alone():
    checked = amtool("check-config", str(ALERTMANAGER_CONFIG))

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def receivers_of(*labels: str) -> list[str]:
    """The receivers the shipped route picks for an alert of these labels."""
    routed = amtool("config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}", *labels)
    assert routed.returncode == 0, routed.stderr
    return routed.stdout.strip().split(",")


def test_the_shipped_route_sends_the_rules_alerts_to_prunehook_resolved_too():
    config = load_yaml(ALERTMANAGER_CONFIG)
    (route,) = config["route"]["routes"]
    (receiver,) = [r for r in config["receivers"] if r["name"] == route["receiver"]]
    (webhook,) = receiver["webhook_configs"]

    assert route["group_by"] == ["instance"] and route["continue"] is True
    assert webhook["url"].endswith("/hooks/alertmanager")
    assert webhook["send_resolved"] is True
    assert webhook["http_config"]["authorization"]["credentials_file"]
    names = [*alerting_rules(load_yaml(RULES)), "NodeFilesystemAlmostOutOfSpace"]
    routed = {name: receivers_of(f"alertname={name}", "instance=build-1:9100") for name in names}
    assert routed == {
        FILLING_UP: ["prunehook"],
        ALMOST_FULL: ["prunehook"],
        "NodeFilesystemAlmostOutOfSpace": ["default"],  # another alert: not prunehook's
    }


# -- the expressions, by promtool's unit tests ----------------------------------------------

GB = 1000**3
DISK = 100 * GB


def series(instance: str, mountpoint: str, avail: str, readonly: str = "0x150") -> list[dict]:
    """A filesystem as node_exporter shows it, over 150 one-minute samples."""
    labels = (
        f'job="node",instance="{instance}",device="/dev/sda1",fstype="ext4",'
        f'mountpoint="{mountpoint}"'
    )
    return [
        {"series": f"node_filesystem_avail_bytes{{{labels}}}", "values": avail},
        {"series": f"node_filesystem_size_bytes{{{labels}}}", "values": f"{DISK}x150"},
        {"series": f"node_filesystem_readonly{{{labels}}}", "values": readonly},
    ]


def rendered(rule: dict[str, Any], labels: dict[str, str], value: float) -> dict[str, str]:
    """The rule's annotations as Prometheus renders them for an alert: the two template
    forms the shipped annotations use."""
    annotations = {}
    for key, template in rule["annotations"].items():
        text = template.replace('{{ printf "%.2f" $value }}', f"{value:.2f}")
        for name, label in labels.items():
            text = text.replace(f"{{{{ $labels.{name} }}}}", label)
        annotations[key] = text
    return annotations


def expected(rule: dict[str, Any], instance: str, mountpoint: str, value: float) -> dict:
    labels = {"job": "node", "instance": instance, "device": "/dev/sda1", "fstype": "ext4",
              "mountpoint": mountpoint}  # fmt: skip
    return {
        "exp_labels": labels | rule["labels"] | {"alertname": rule["alert"]},
        "exp_annotations": rendered(rule, labels, value),
    }


def test_the_shipped_expressions_fire_on_dockers_filesystem_only(tmp_path):
    rules = alerting_rules(load_yaml(RULES))
    filling, full = rules[FILLING_UP], rules[ALMOST_FULL]
    minute = 100 * MB  # the filling host loses this much a minute: 12 % left at 70 min
    unit_test = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    *series("build-1:9100", "/", f"{19 * GB}-{minute}x150"),
                    *series("build-2:9100", "/var", f"{4 * GB}x150"),
                    # not where Docker keeps its data, read-only: never alerts
                    *series("build-3:9100", "/boot", f"{1 * GB}x150"),
                    *series("build-4:9100", "/", f"{1 * GB}x150", readonly="1x150"),
                ],
                "alert_rule_test": [
                    # pending until `for:` has passed
                    {"eval_time": "4m", "alertname": ALMOST_FULL, "exp_alerts": []},
                    {
                        "eval_time": "6m",
                        "alertname": ALMOST_FULL,
                        "exp_alerts": [expected(full, "build-2:9100", "/var", 4.0)],
                    },
                    {"eval_time": "50m", "alertname": FILLING_UP, "exp_alerts": []},
                    {
                        "eval_time": "70m",
                        "alertname": FILLING_UP,
                        "exp_alerts": [expected(filling, "build-1:9100", "/", 12.0)],
                    },
                ],
            }
        ],
    }
    test_file = tmp_path / "rules_test.yml"
    test_file.write_text(yaml.safe_dump(unit_test))

    tested = promtool("test", "rules", str(test_file))

    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert full["labels"]["severity"] == "critical"
    assert filling["labels"]["severity"] != "critical"
