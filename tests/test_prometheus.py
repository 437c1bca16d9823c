"""The shipped Prometheus rules and Alertmanager route (contrib/prometheus): checked by
promtool and amtool, unit-tested with `promtool test rules`, and run end to end: a real
node_exporter reads the loop disk a real dockerd keeps its data on, Prometheus evaluates
the rules, Alertmanager posts to prunehook under gunicorn, and prunehook prunes the build
host over SSH until the alert resolves by itself.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TOKEN
from tests.harness import Gunicorn, SSHServer, wait_for
from tests.harness.prometheus import (
    ALERTMANAGER_CONFIG,
    RULES,
    Alertmanager,
    NodeExporter,
    Prometheus,
    alerting_rules,
    amtool,
    fit_alertmanager,
    fit_rules,
    load_yaml,
    promtool,
    stop_all,
)
from tests.harness.small_host import SmallDisk, small_disk_host

FILLING_UP = "DockerDataDiskFillingUp"
ALMOST_FULL = "DockerDataDiskAlmostFull"
MB = 1000**2
AGE_PRUNE = "allowed docker builder prune -f --filter until=24h"


# -- the files as shipped ---------------------------------------------------------------


def test_promtool_accepts_the_shipped_rules():
    checked = promtool("check", "rules", str(RULES))

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 2 rules found" in checked.stdout


def test_amtool_accepts_the_shipped_alertmanager_configuration_alone():
    checked = amtool("check-config", str(ALERTMANAGER_CONFIG))

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_every_selector_of_the_shipped_rules_carries_the_one_mountpoint_matcher():
    fitted = alerting_rules(fit_rules(load_yaml(RULES), "/srv/docker", {}, {}))

    for rule in fitted.values():
        assert rule["expr"].count('mountpoint="/srv/docker"') >= 2, rule["expr"]


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


# -- end to end -------------------------------------------------------------------------

BLOB = 8 * MB  # a build leaves about twice this on the disk: its context and its copy
MOST_BUILDS = 12
# the almost-full alert fires this many points of "percent available" below the empty
# disk's; prunehook's min_free goal lies between it and the empty disk
ALERT_BELOW_EMPTY = 12
GOAL_BELOW_EMPTY = 4
FLOW_S = 30  # the most any step of the flow waits


@pytest.fixture
def small_disk(tmp_path_factory) -> Iterator[SmallDisk]:
    """A build host on a 200 MB filesystem: dockerd's data root is all of it."""
    with small_disk_host(tmp_path_factory.mktemp("prometheus-disk"), size_mb=200) as host:
        yield host


@dataclass
class Monitoring:
    node_exporter: NodeExporter
    prometheus: Prometheus
    alertmanager: Alertmanager


@pytest.fixture
def monitor(tmp_path) -> Iterator[Callable[[Path, float, str], Monitoring]]:
    """Starts node_exporter, Alertmanager and Prometheus with the shipped files, fitted to
    the loop disk, a threshold and prunehook's URL (see tests/harness/prometheus.py)."""
    started: list[Monitoring] = []

    def start(mountpoint: Path, percent_available: float, prunehook_url: str) -> Monitoring:
        token_file = tmp_path / "prunehook.token"
        token_file.write_text(TOKEN + "\n")  # as `echo` writes it: Alertmanager trims it
        token_file.chmod(0o600)
        rules = fit_rules(
            load_yaml(RULES),
            mountpoint=str(mountpoint),
            percent_available={ALMOST_FULL: percent_available},
            durations={ALMOST_FULL: "1s"},  # the filling-up alert keeps its hour: pending
        )
        config = fit_alertmanager(
            load_yaml(ALERTMANAGER_CONFIG),
            url=f"{prunehook_url}/hooks/alertmanager",
            credentials_file=token_file,
            group_wait="1s",
            group_interval="1s",
        )
        node_exporter = NodeExporter(tmp_path / "node-exporter")
        alertmanager = Alertmanager(tmp_path / "alertmanager", config)
        prometheus = Prometheus(tmp_path / "prometheus", rules, node_exporter, alertmanager)
        monitoring = Monitoring(node_exporter, prometheus, alertmanager)
        started.append(monitoring)
        for server in (node_exporter, alertmanager, prometheus):
            server.start()
        for server in (node_exporter, alertmanager, prometheus):
            server.wait_until_ready()
        return monitoring

    yield start
    for monitoring in started:
        stop_all(monitoring.prometheus, monitoring.alertmanager, monitoring.node_exporter)


def targets_file(path: Path, host: SSHServer, min_free_percent: int) -> Path:
    """One target, build-1, on 127.0.0.1: the address node_exporter's `instance` names."""
    lines = [
        "[targets.build-1]",
        f"host = {json.dumps(host.address)}",
        f"port = {host.port}",
        'user = "root"',
        f"key_file = {json.dumps(str(host.client_key))}",
        f"known_hosts = {json.dumps(str(host.known_hosts))}",
        f"docker_root = {json.dumps(str(host.docker_root))}",
        f'min_free = "{min_free_percent}%"',
        # the cron ping's run starts the interval: only a critical alert may prune inside it
        "critical_interval_s = 1",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def alertmanager_decisions(served: Gunicorn) -> dict[tuple[str, str], float]:
    """prunehook's answers to Alertmanager so far, from /metrics: (decision, target) -> count."""
    return {
        (sample.labels["decision"], sample.labels["target"]): sample.value
        for family in text_string_to_metric_families(served.raw("/metrics"))
        for sample in family.samples
        if sample.name == "prunehook_trigger_decisions_total"
        and sample.labels["source"] == "alertmanager"
    }


def resolved_notifications(served: Gunicorn) -> float:
    """The Alertmanager notifications prunehook ignored: resolved ones name no host."""
    return alertmanager_decisions(served).get(("ignored", ""), 0)


def fill_until_below(small_disk: SmallDisk, percent: float, folder: Path) -> int:
    """Fresh build cache, one build at a time, until the disk has less than `percent`
    available; the builds made."""
    for build in range(1, MOST_BUILDS + 1):
        small_disk.engine.fill_build_cache(folder / str(build), [BLOB])
        if small_disk.percent_available() < percent:
            return build
    raise AssertionError(f"{MOST_BUILDS} builds left {small_disk.percent_available():.1f}%")


def runs(served: Gunicorn) -> list[dict[str, Any]]:
    """build-1's recent runs, newest first, as /status shows them."""
    status, shown = served.call("/status/build-1", None, "GET")
    assert status == 200, shown
    return shown["recent_runs"]


def finished_runs(served: Gunicorn, count: int) -> list[dict[str, Any]] | None:
    """build-1's runs once there are `count`, all finished."""
    shown = runs(served)
    return shown if len(shown) == count and all(run["finished_ts"] for run in shown) else None


def firing(prometheus: Prometheus, name: str) -> list[dict[str, Any]]:
    alerts = prometheus.alerts()
    return [a for a in alerts if a["labels"]["alertname"] == name and a["state"] == "firing"]


def serve_one_target(serve, host: SSHServer, min_free_percent: int, folder: Path) -> Gunicorn:
    return serve(
        {
            "PRUNEHOOK_TOKEN": TOKEN,
            "PRUNEHOOK_DB_PATH": str(folder / "state.sqlite3"),
            "PRUNEHOOK_TARGETS_FILE": str(
                targets_file(folder / "targets.toml", host, min_free_percent)
            ),
        },
        workers=2,
    )


def test_almost_full_alert_prunes_to_the_goal_and_resolves_itself(
    small_disk, serve, monitor, tmp_path
):
    empty = math.floor(small_disk.percent_available())
    alert_below, goal = empty - ALERT_BELOW_EMPTY, empty - GOAL_BELOW_EMPTY
    served = serve_one_target(serve, small_disk.host, goal, tmp_path)
    # a prune now: the next is due in interval_s (6 h), so only a critical alert prunes
    status, answer = served.call("/hooks/cron?wait=1")
    assert (status, answer["run"]["result"]) == (200, "ok"), answer
    prometheus = monitor(small_disk.disk.mountpoint, alert_below, served.base).prometheus
    scraped = f'node_filesystem_avail_bytes{{mountpoint="{small_disk.disk.mountpoint}"}}'
    wait_for(lambda: prometheus.query(scraped), FLOW_S, "Prometheus scraping the loop disk")

    fill_until_below(small_disk, alert_below, tmp_path / "builds")

    (alert,) = wait_for(lambda: firing(prometheus, ALMOST_FULL), FLOW_S, "the alert firing")
    pruned, first = wait_for(lambda: finished_runs(served, 2), FLOW_S, "the alert's prune")
    wait_for(lambda: not firing(prometheus, ALMOST_FULL), FLOW_S, "the alert resolving")
    wait_for(lambda: resolved_notifications(served), FLOW_S, "the resolved notification")
    # the label prunehook routes by, naming the target's host, and the critical severity
    exporter = prometheus.node_exporter.address
    assert (alert["labels"]["instance"], alert["labels"]["severity"]) == (exporter, "critical")
    assert exporter.partition(":")[0] == small_disk.host.address
    assert (first["trigger"], pruned["trigger"]) == ("cron", "alertmanager:prunehook")
    assert (pruned["result"], pruned["goal_met"]) == ("ok", True)
    keep = pruned["keep_storage_bytes"]
    assert keep is not None and pruned["cache_after"] <= keep
    assert pruned["disk_free_after"] >= pruned["disk_size"] * goal / 100
    assert small_disk.percent_available() >= goal
    assert small_disk.host.prunes_run() == [
        AGE_PRUNE,
        AGE_PRUNE,
        f"allowed docker builder prune -f --keep-storage {keep}",
    ]
    # the firing notification started the prune; the resolved one, counted, pruned nothing
    assert alertmanager_decisions(served) == {("started", "build-1"): 1, ("ignored", ""): 1}
    assert len(runs(served)) == 2
