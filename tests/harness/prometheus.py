"""Prometheus, Alertmanager and node_exporter on loopback ports, fed with the shipped
contrib/prometheus files fitted to a test: a small loop disk and timings of seconds.

The fitting is a small, explicit transform of the loaded YAML (fit_rules,
fit_alertmanager): the mountpoint selector, the thresholds and `for:` of the alerts a
test names, and the route's group timings, URL and token file. Everything else, the
expressions' shape, labels, annotations, matchers, grouping and send_resolved, is what
operators get.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.harness.parts import REPO, find_binary, free_port, wait_for

CONTRIB = REPO / "contrib" / "prometheus"
RULES = CONTRIB / "rules.yml"
ALERTMANAGER_CONFIG = CONTRIB / "alertmanager.yml"
# the filesystem selector every shipped expression carries; docs/prometheus.md tells
# operators to adapt it, and a test points it at its loop disk
SHIPPED_MOUNTPOINTS = 'mountpoint=~"/|/var|/var/lib/docker"'
# the "percent available" comparison of an alert: `... * 100 < 5`
PERCENT_THRESHOLD = re.compile(r"\* 100 < [0-9.]+")
PRUNEHOOK_RECEIVER = "prunehook"
# between two scrapes, and two evaluations of the rules
TICK_S = 1


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alerting_rules(rules: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The alerting rules of a rules file by alert name."""
    return {
        rule["alert"]: rule
        for group in rules["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def fit_rules(
    rules: dict[str, Any],
    mountpoint: str,
    percent_available: dict[str, float],
    durations: dict[str, str],
) -> dict[str, Any]:
    """The shipped rules on `mountpoint` alone; the alerts named in `percent_available`
    fire under that percent available, those in `durations` after that `for:`."""
    fitted = copy.deepcopy(rules)
    by_name = alerting_rules(fitted)
    assert set(percent_available) | set(durations) <= set(by_name), by_name.keys()
    for name, rule in by_name.items():
        expr = rule["expr"]
        selectors = expr.count("node_filesystem_")
        assert selectors == expr.count(SHIPPED_MOUNTPOINTS), (
            f"{name}: not all {selectors} select {SHIPPED_MOUNTPOINTS}"
        )
        expr = expr.replace(SHIPPED_MOUNTPOINTS, f'mountpoint="{mountpoint}"')
        if name in percent_available:
            expr, count = PERCENT_THRESHOLD.subn(f"* 100 < {percent_available[name]}", expr)
            assert count == 1, f"{name}: {count} percent thresholds in {expr!r}"
        rule["expr"] = expr
        if name in durations:
            rule["for"] = durations[name]
    return fitted


def fit_alertmanager(
    config: dict[str, Any], url: str, credentials_file: Path, group_wait: str, group_interval: str
) -> dict[str, Any]:
    """The shipped configuration posting to `url` with the token in `credentials_file`,
    its prunehook route grouping for `group_wait` and `group_interval`."""
    fitted = copy.deepcopy(config)
    (route,) = [r for r in fitted["route"]["routes"] if r["receiver"] == PRUNEHOOK_RECEIVER]
    route |= {"group_wait": group_wait, "group_interval": group_interval}
    (receiver,) = [r for r in fitted["receivers"] if r["name"] == PRUNEHOOK_RECEIVER]
    (webhook,) = receiver["webhook_configs"]
    webhook["url"] = url
    webhook["http_config"]["authorization"]["credentials_file"] = str(credentials_file)
    return fitted


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


class Server:
    """One of the three on a loopback port: its own folder and log, started and stopped."""

    name = ""
    binaries: tuple[str, ...] = ()
    ready_path = "/-/ready"

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.log_path = root / f"{self.name}.log"
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base(self) -> str:
        return f"http://{self.address}"

    def arguments(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        """Started, not yet waited for (wait_until_ready), so several start at once."""
        binary = find_binary(*self.binaries)
        self.root.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [binary, *self.arguments()], stdout=log, stderr=subprocess.STDOUT
            )

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.base + self.ready_path, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_until_ready(self, timeout: float = 20) -> None:
        wait_for(self._ready, timeout, f"{self.name} (log: {self.log_path})", self.process)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class NodeExporter(Server):
    """node_exporter with its filesystem collector alone: what the rules read."""

    name = "node-exporter"
    binaries = ("prometheus-node-exporter", "node_exporter")
    ready_path = "/metrics"

    def arguments(self) -> list[str]:
        return [
            f"--web.listen-address={self.address}",
            "--collector.disable-defaults",
            "--collector.filesystem",
        ]


class Alertmanager(Server):
    """Alertmanager with `config` (a fitted alertmanager.yml), no cluster (it would listen
    on every address)."""

    name = "alertmanager"
    binaries = ("prometheus-alertmanager", "alertmanager")

    def __init__(self, root: Path, config: dict[str, Any]):
        super().__init__(root)
        self.config_path = root / "alertmanager.yml"
        self.config = config

    def arguments(self) -> list[str]:
        self.config_path.write_text(yaml.safe_dump(self.config))
        return [
            f"--config.file={self.config_path}",
            f"--storage.path={self.root / 'data'}",
            f"--web.listen-address={self.address}",
            "--cluster.listen-address=",
        ]


class Prometheus(Server):
    """Prometheus scraping `node_exporter` as job "node" (the shipped selectors' job) every
    second, evaluating `rules` (fitted) every second, and alerting `alertmanager`."""

    name = "prometheus"
    binaries = ("prometheus",)

    def __init__(
        self, root: Path, rules: dict[str, Any], node_exporter: Server, alertmanager: Server
    ):
        super().__init__(root)
        self.rules = rules
        self.node_exporter = node_exporter
        self.alertmanager = alertmanager

    def configuration(self, rules_path: Path) -> dict[str, Any]:
        interval = f"{TICK_S}s"
        return {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(rules_path)],
            "alerting": {
                "alertmanagers": [{"static_configs": [{"targets": [self.alertmanager.address]}]}]
            },
            "scrape_configs": [
                {"job_name": "node", "static_configs": [{"targets": [self.node_exporter.address]}]}
            ],
        }

    def arguments(self) -> list[str]:
        rules_path = self.root / "rules.yml"
        rules_path.write_text(yaml.safe_dump(self.rules))
        config_path = self.root / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(self.configuration(rules_path)))
        return [
            f"--config.file={config_path}",
            f"--storage.tsdb.path={self.root / 'data'}",
            f"--web.listen-address={self.address}",
        ]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector."""
        answer = get_json(f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        return answer["data"]["result"]

    def alerts(self) -> list[dict[str, Any]]:
        """Its alerts now, pending or firing (resolved ones are gone)."""
        return get_json(f"{self.base}/api/v1/alerts")["data"]["alerts"]


def promtool(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [find_binary("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [find_binary("amtool"), *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def stop_all(*servers: Server | None) -> None:
    for server in servers:
        if server is not None:
            server.stop()
