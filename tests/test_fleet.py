"""A fleet of build hosts (DESIGN.md, "A fleet of build hosts"), with the real parts.

`three_hosts` is three OpenSSH sshd on loopback in front of one dockerd, named build-1..3
by a targets file, each with the alias NAME.fleet.test (tests/harness/fleet.py). The
client key is pinned on every host to prunehook-guard with a log of its own, so
`hosts[name].prunes_run()` is what ran on that host and nowhere else.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from tests.conftest import AUTH, TOKEN
from tests.harness import REPO, BuildFleet, How, operator_environment, start_gunicorn
from tests.harness.gunicorn import VENV_BIN
from tests.payloads import ALERTMANAGER
from webhook import create_app
from webhook.config import ConfigError, load_settings

NAMES = ("build-1", "build-2", "build-3")
PRUNE = "allowed docker builder prune -f --filter until=24h"
# a loopback address that is no host of the harness's fleets (they count up from 127.0.0.2)
BAIT = "127.0.0.254"


def ran(fleet: BuildFleet) -> dict[str, list[str]]:
    """The prunes that ran on each host, as its guard log says (its probes left out)."""
    return {name: host.prunes_run() for name, host in fleet.hosts.items()}


def probed(fleet: BuildFleet) -> dict[str, list[str]]:
    """The read-only probes each host's guard was asked to run."""
    return {name: host.probes_run() for name, host in fleet.hosts.items()}


def checked(fleet: BuildFleet) -> list[str]:
    """The read-only probes `flask check` makes of a host (no buildx here: no inspect)."""
    return [
        "allowed docker version",
        "allowed docker buildx version",
        f"allowed df -B1 --output=size,avail {fleet.docker_root}",
        "allowed docker system df",
    ]


def nothing_ran() -> dict[str, list[str]]:
    return {name: [] for name in NAMES}


def only(name: str, *commands: str) -> dict[str, list[str]]:
    return nothing_ran() | {name: list(commands)}


def sshd_logs(fleet: BuildFleet) -> dict[str, str]:
    return {name: host.log_path.read_text() for name, host in fleet.hosts.items()}


def firing(**labels: str) -> dict:
    """One firing alert of an Alertmanager group, with these labels."""
    (template,) = ALERTMANAGER["alerts"]
    return template | {"labels": {"alertname": "BuildHostDiskFull", **labels}}


def group(*alerts: dict, **common: str) -> dict:
    """An Alertmanager group; `common` goes into commonLabels."""
    common_labels = {"alertname": "BuildHostDiskFull", **common}
    return ALERTMANAGER | {"alerts": list(alerts), "commonLabels": common_labels}


def watchdog(host: str, status: str = "firing") -> dict:
    return {"host": host, "mount": "/var/lib/docker", "used_percent": 97.2, "status": status}


@pytest.fixture
def fleet_app(three_hosts: BuildFleet, env_for, tmp_path: Path) -> Callable[..., Flask]:
    """The app configured as an operator configures a fleet: PRUNEHOOK_TARGETS_FILE."""

    def make(**variables: str) -> Flask:
        env_for(three_hosts, **variables)
        return create_app(instance_path=str(tmp_path / "instance"))

    return make


def test_a_watchdog_alert_for_one_host_prunes_that_host_only(fleet_app, three_hosts):
    client = fleet_app().test_client()

    answer = client.post("/hooks/watchdog?wait=1", headers=AUTH, json=watchdog("build-2"))

    assert answer.status_code == 200
    body = answer.get_json()
    assert body["decision"] == "started"
    (item,) = body["results"]
    assert (item["target"], item["decision"]) == ("build-2", "started")
    assert (item["run"]["result"], item["run"]["rc"]) == ("ok", 0)
    assert ran(three_hosts) == only("build-2", PRUNE)
    shown = {t["name"]: t for t in client.get("/status").get_json()["targets"]}
    assert sorted(shown) == list(NAMES)
    assert shown["build-2"]["last_result"] == "ok"
    assert shown["build-2"]["last_run_ts"] == item["run"]["started_ts"]
    assert shown["build-2"]["next_eligible_ts"] > shown["build-2"]["last_run_ts"]
    for other in ("build-1", "build-3"):
        assert (shown[other]["last_run_ts"], shown[other]["last_result"]) == (None, None)


def test_an_alertmanager_group_prunes_each_host_its_alerts_name_and_no_other(
    fleet_app, three_hosts
):
    client = fleet_app().test_client()
    payload = group(
        # an alias, with another case and node_exporter's port
        firing(instance="BUILD-1.fleet.test:9100"),
        # a name, in the instance label
        firing(instance="build-3:9100", job="node"),
        # commonLabels would say build-2: the alerts' own labels are what counts
        host="build-2",
    )

    answer = client.post("/hooks/alertmanager?wait=1", headers=AUTH, json=payload)

    assert answer.status_code == 200
    items = {item["target"]: item for item in answer.get_json()["results"]}
    assert sorted(items) == ["build-1", "build-3"]
    assert {name: item["run"]["result"] for name, item in items.items()} == {
        "build-1": "ok",
        "build-3": "ok",
    }
    assert ran(three_hosts) == nothing_ran() | {"build-1": [PRUNE], "build-3": [PRUNE]}


def test_the_first_host_label_an_alert_carries_decides_its_target(fleet_app, three_hosts):
    client = fleet_app().test_client()
    # PRUNEHOOK_HOST_LABELS defaults to host,nodename,instance: `host` wins over `instance`
    payload = group(firing(host="build-3", instance="build-1.fleet.test:9100"))

    answer = client.post("/hooks/alertmanager?wait=1", headers=AUTH, json=payload)

    assert [item["target"] for item in answer.get_json()["results"]] == ["build-3"]
    assert ran(three_hosts) == only("build-3", PRUNE)


def test_host_labels_follow_the_order_the_operator_configured(fleet_app, three_hosts):
    client = fleet_app(PRUNEHOOK_HOST_LABELS="instance,host").test_client()
    payload = group(firing(host="build-3", instance="build-1.fleet.test:9100"))

    answer = client.post("/hooks/alertmanager?wait=1", headers=AUTH, json=payload)

    assert [item["target"] for item in answer.get_json()["results"]] == ["build-1"]
    assert ran(three_hosts) == only("build-1", PRUNE)


def test_a_group_naming_a_host_twice_and_a_stranger_prunes_that_host_once(fleet_app, three_hosts):
    client = fleet_app().test_client()
    payload = group(
        firing(instance="build-2:9100", mountpoint="/"),
        firing(instance="Build-2.Fleet.Test:9100", mountpoint="/var/lib/docker"),
        firing(instance="build-9:9100"),
    )

    answer = client.post("/hooks/alertmanager?wait=1", headers=AUTH, json=payload)

    assert answer.status_code == 200
    body = answer.get_json()
    assert [(item["target"], item["decision"]) for item in body["results"]] == [
        ("build-2", "started"),
        (None, "unknown_target"),
    ]
    assert (body["decision"], body["target"]) == ("started", "build-2")
    assert ran(three_hosts) == only("build-2", PRUNE)
    assert "prunehook_unknown_hosts_total 1.0" in client.get("/metrics").get_data(as_text=True)


def test_an_alert_naming_a_hosts_address_prunes_that_host_only(fleet_app, three_hosts):
    # each of the harness's hosts has a loopback address of its own (no two targets may share
    # one); an exporter's instance label carries its own port, which is no SSH port
    client = fleet_app().test_client()
    address = three_hosts.address_of("build-2")
    assert three_hosts.hosts["build-2"].address == address

    answer = client.post(
        "/hooks/alertmanager?wait=1", headers=AUTH, json=group(firing(instance=f"{address}:9100"))
    )

    assert [item["target"] for item in answer.get_json()["results"]] == ["build-2"]
    assert ran(three_hosts) == only("build-2", PRUNE)


def test_an_alert_for_a_host_that_is_no_target_prunes_nothing_and_is_counted(
    fleet_app, three_hosts
):
    client = fleet_app().test_client()

    for payload, hook in [
        (watchdog("build-9.fleet.test"), "watchdog"),
        (group(firing(instance="build-9:9100")), "alertmanager"),
    ]:
        answer = client.post(f"/hooks/{hook}?wait=1", headers=AUTH, json=payload)

        assert answer.status_code == 200
        body = answer.get_json()
        (item,) = body["results"]
        assert (item["target"], item["decision"], item["run_id"]) == (
            None,
            "unknown_target",
            None,
        )
        assert "build-9" in item["reason"]
        assert body["decision"] == "unknown_target"

    assert ran(three_hosts) == nothing_ran()
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "prunehook_unknown_hosts_total 2.0" in metrics
    assert all(t["last_run_ts"] is None for t in client.get("/status").get_json()["targets"])


def test_resolved_alerts_for_fleet_hosts_prune_nothing(fleet_app, three_hosts):
    client = fleet_app().test_client()
    resolved_group = group(firing(instance="build-1:9100")) | {"status": "resolved"}
    resolved_group["alerts"][0] = resolved_group["alerts"][0] | {"status": "resolved"}

    by_watchdog = client.post(
        "/hooks/watchdog?wait=1", headers=AUTH, json=watchdog("build-2", "resolved")
    )
    by_alertmanager = client.post("/hooks/alertmanager?wait=1", headers=AUTH, json=resolved_group)

    assert by_watchdog.status_code == by_alertmanager.status_code == 200
    assert by_watchdog.get_json()["decision"] == "ignored"
    assert by_alertmanager.get_json()["decision"] == "ignored"
    assert ran(three_hosts) == nothing_ran()


def test_a_cron_ping_sweeps_every_target(fleet_app, three_hosts):
    client = fleet_app().test_client()

    answer = client.post("/hooks/cron?wait=1", headers=AUTH)

    assert answer.status_code == 200
    items = answer.get_json()["results"]
    assert sorted(item["target"] for item in items) == list(NAMES)
    assert {item["decision"] for item in items} == {"started"}
    assert {item["run"]["result"] for item in items} == {"ok"}
    assert ran(three_hosts) == {name: [PRUNE] for name in NAMES}


def test_a_sweep_with_one_prune_at_a_time_still_prunes_every_target(fleet_app, three_hosts):
    client = fleet_app(PRUNEHOOK_MAX_PARALLEL="1").test_client()

    answer = client.post("/hooks/cron?wait=1", headers=AUTH)

    assert {item["run"]["result"] for item in answer.get_json()["results"]} == {"ok"}
    assert ran(three_hosts) == {name: [PRUNE] for name in NAMES}


def test_a_cron_ping_with_a_target_prunes_that_target_only(fleet_app, three_hosts):
    client = fleet_app().test_client()

    answer = client.post("/hooks/cron?wait=1&target=build-3", headers=AUTH)

    assert answer.status_code == 200
    (item,) = answer.get_json()["results"]
    assert (item["target"], item["decision"]) == ("build-3", "started")
    assert ran(three_hosts) == only("build-3", PRUNE)


def test_a_cron_ping_naming_an_unknown_target_is_422_and_runs_nothing(fleet_app, three_hosts):
    client = fleet_app().test_client()

    for query in ("target=nope", "target=build-1&target=nope"):
        answer = client.post(f"/hooks/cron?wait=1&{query}", headers=AUTH)

        assert answer.status_code == 422
        body = answer.get_json()
        assert "target" in body["fields"]
        assert "nope" in body["fields"]["target"][0]

    assert ran(three_hosts) == nothing_ran()
    assert all(t["last_run_ts"] is None for t in client.get("/status").get_json()["targets"])


def test_a_host_named_by_an_alert_is_never_connected_to(fleet_app, three_hosts):
    """Only configured endpoints are dialled: not a host an alert names, nor its port."""
    client = fleet_app().test_client()
    logs_before = sshd_logs(three_hosts)
    # a listener on a loopback address no host of the fleet has, which an alert names with
    # its port
    assert BAIT not in {host.address for host in three_hosts.hosts.values()}
    with socket.create_server((BAIT, 0)) as bait:
        port = bait.getsockname()[1]
        answers = [
            client.post("/hooks/watchdog?wait=1", headers=AUTH, json=watchdog(host)).get_json()
            for host in ("evil.example", f"{BAIT}:{port}", f"evil.example:{port}")
        ]
        bait.setblocking(False)
        with pytest.raises(BlockingIOError):
            bait.accept()[0].close()  # nobody connected

    assert ran(three_hosts) == nothing_ran()
    assert sshd_logs(three_hosts) == logs_before
    assert [answer["decision"] for answer in answers] == ["unknown_target"] * 3


def test_an_alias_in_an_alert_connects_to_the_targets_own_endpoint(fleet_app, three_hosts):
    """build-1.fleet.test resolves nowhere: the prune reaches build-1 because prunehook
    connects to build-1's configured host and port, never to the name in the alert."""
    client = fleet_app().test_client()

    answer = client.post(
        "/hooks/watchdog?wait=1", headers=AUTH, json=watchdog("build-1.fleet.test")
    )

    (item,) = answer.get_json()["results"]
    assert (item["target"], item["run"]["result"]) == ("build-1", "ok")
    assert ran(three_hosts) == only("build-1", PRUNE)
    port = three_hosts.hosts["build-1"].port
    log = three_hosts.hosts["build-1"].log_path.read_text()
    own = re.escape(three_hosts.address_of("build-1"))
    # (from whichever loopback address the kernel picks) to build-1's own address and port
    assert re.search(rf"Connection from \S+ port \d+ on {own} port {port} ", log)
    assert "Accepted publickey for root" in log


def test_each_target_has_its_own_status_and_metrics_under_gunicorn(serve, three_hosts, service_env):
    served = serve(service_env(three_hosts))
    code, body = served.call("/hooks/cron?wait=1&target=build-1")
    assert (code, body["results"][0]["run"]["result"]) == (200, "ok")

    code, one = served.call("/status/build-1", None, "GET")

    assert code == 200
    assert (one["name"], one["target"]) == ("build-1", "build-1")
    build_1 = three_hosts.hosts["build-1"]
    assert one["host"] == f"root@{build_1.address}:{build_1.port}"
    assert one["last_result"] == "ok"
    (run,) = one["recent_runs"]
    assert (run["id"], run["result"]) == (body["run_id"], "ok")
    assert served.call("/status/build-2", None, "GET")[1]["recent_runs"] == []

    code, unknown = served.call("/status/nope", None, "GET")
    assert code == 404
    assert unknown["error"] == "unknown_target"
    assert "nope" in unknown["message"]

    metrics = served.raw("/metrics")
    for name in NAMES:
        assert f'prunehook_in_flight{{target="{name}"}} 0.0' in metrics
    assert 'prunehook_prunes_total{outcome="ok",target="build-1"} 1.0' in metrics
    started = 'prunehook_trigger_decisions_total{decision="started",source="cron",target="build-1"}'
    assert f"{started} 1.0" in metrics
    assert 'prunehook_last_success_timestamp_seconds{target="build-1"}' in metrics
    assert 'prunehook_last_success_timestamp_seconds{target="build-2"}' not in metrics


def cli(app: Flask):
    return app.test_cli_runner()


def test_the_targets_command_lists_the_fleet(fleet_app, three_hosts):
    result = cli(fleet_app()).invoke(args=["targets"])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines] == list(NAMES)
    for line, name in zip(lines, NAMES, strict=True):
        host = three_hosts.hosts[name]
        assert f"root@{host.address}:{host.port}" in line
        assert f"aliases: {name}.fleet.test" in line
    assert ran(three_hosts) == nothing_ran()


def test_flask_targets_as_an_operator_types_it(three_hosts, service_env, tmp_path):
    env = operator_environment(
        PRUNEHOOK_INSTANCE_PATH=str(tmp_path / "instance"), **service_env(three_hosts)
    )

    shown = subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "wsgi", "targets"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert shown.returncode == 0, shown.stderr
    assert [line.split()[0] for line in shown.stdout.splitlines()] == list(NAMES)


def test_cli_prune_with_a_target_prunes_that_target_only(fleet_app, three_hosts):
    result = cli(fleet_app()).invoke(args=["prune", "--target", "build-1"])

    assert result.exit_code == 0, result.output
    said = [line for line in result.output.splitlines() if not line.startswith("  ")]
    assert len(said) == 1 and said[0].startswith("build-1: pruned: freed ")
    assert ran(three_hosts) == only("build-1", PRUNE)


def test_cli_prune_of_an_unknown_target_exits_2_naming_it_and_runs_nothing(fleet_app, three_hosts):
    result = cli(fleet_app()).invoke(args=["prune", "--target", "build-1", "--target", "nope"])

    assert result.exit_code == 2
    assert "no target named nope (known: build-1, build-2, build-3)" in result.output
    assert ran(three_hosts) == nothing_ran()


def test_cli_check_checks_every_target(fleet_app, three_hosts):
    result = cli(fleet_app()).invoke(args=["check"])

    assert result.exit_code == 0, result.output
    for name in NAMES:
        host = three_hosts.hosts[name]
        assert f"PASS  target       {name} (root@{host.address}:{host.port})" in result.output
    assert result.output.count("PASS  ssh login") == 3
    assert result.output.count("PASS  host key") == 3
    assert probed(three_hosts) == {name: checked(three_hosts) for name in NAMES}
    assert ran(three_hosts) == nothing_ran()


def test_cli_check_of_a_target_that_fails_goes_on_to_the_next(fleet_app, three_hosts):
    build_2 = three_hosts.hosts["build-2"]
    trusted = three_hosts.known_hosts.read_text().splitlines(keepends=True)
    three_hosts.known_hosts.write_text(
        "".join(line for line in trusted if f"]:{build_2.port} " not in line)
    )

    result = cli(fleet_app()).invoke(args=["check"])

    assert result.exit_code == 1
    assert f"FAIL  host key     [{build_2.address}]:{build_2.port} is not in" in result.output
    assert f"fix: ssh-keyscan -p {build_2.port} {build_2.address}" in result.output
    assert result.output.count("PASS  ssh login") == 2
    probes = checked(three_hosts)
    assert probed(three_hosts) == nothing_ran() | {"build-1": probes, "build-3": probes}


def test_cli_check_of_one_target_checks_that_one(fleet_app, three_hosts):
    result = cli(fleet_app()).invoke(args=["check", "--target", "build-2"])

    assert result.exit_code == 0, result.output
    assert "PASS  target       build-2" in result.output
    assert "build-1" not in result.output and "build-3" not in result.output
    assert probed(three_hosts) == only("build-2", *checked(three_hosts))


def test_cli_status_with_a_target_shows_that_target(fleet_app, three_hosts):
    runner = cli(fleet_app())
    assert runner.invoke(args=["prune", "--target", "build-3"]).exit_code == 0

    result = runner.invoke(args=["status", "--target", "build-3"])
    as_json = runner.invoke(args=["status", "--target", "build-3", "--json"])

    assert result.exit_code == 0, result.output
    header, row = result.output.splitlines()
    assert header.split()[:2] == ["TARGET", "STATE"]
    assert row.split()[:2] == ["build-3", "ok"]
    assert " s ago " in row or " now " in row  # just pruned
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output)["name"] == "build-3"
    assert json.loads(as_json.output)["last_result"] == "ok"
    assert "build-1" not in result.output + as_json.output


SEED_KEYS = (
    "enabled",
    "interval_s",
    "until",
    "all",
    "last_run_ts",
    "last_reclaimed",
    "last_reclaimed_bytes",
    "last_error",
)


def test_the_single_host_setup_of_the_readme_works_as_before(serve, three_hosts, service_env):
    """No targets file: PRUNEHOOK_SSH_* make one target, which every firing alert concerns
    whatever host it names; /status keeps its keys at the top level and adds `targets`."""
    host = three_hosts.hosts["build-2"]
    served = serve(service_env(host))

    code, body = served.call("/hooks/watchdog?wait=1", body=watchdog("some-other-host"))

    assert (code, body["decision"], body["run"]["result"]) == (200, "started", "ok")
    (item,) = body["results"]
    # the one target is named after its host: build-2's own address
    assert (item["target"], item["run_id"]) == (host.address, body["run_id"])
    assert ran(three_hosts) == only("build-2", PRUNE)
    shown = served.status()
    for key in SEED_KEYS:
        assert key in shown, key
    assert shown["target"] == host.address
    assert shown["host"] == f"root@{host.address}:{host.port}"
    assert (shown["last_result"], shown["last_error"]) == ("ok", None)
    assert shown["last_reclaimed"] == body["run"]["reclaimed"]
    assert [run["id"] for run in shown["recent_runs"]] == [body["run_id"]]
    (target,) = shown["targets"]
    assert (target["name"], target["host"]) == (host.address, shown["host"])
    assert target["last_run_ts"] == shown["last_run_ts"]
    code, one = served.call(f"/status/{host.address}", None, "GET")
    assert (code, one["last_result"]) == (200, "ok")


def test_a_targets_file_of_one_target_keeps_the_top_level_keys_and_routes_by_host(
    tmp_path_factory, docker_engine, env_for, tmp_path
):
    solo = BuildFleet(tmp_path_factory.mktemp("solo"), docker_engine.host, names=("solo",))
    try:
        env_for(solo.start())
        client = create_app(instance_path=str(tmp_path / "instance")).test_client()

        elsewhere = client.post(
            "/hooks/watchdog?wait=1", headers=AUTH, json=watchdog("some-other-host")
        )
        pruned = client.post("/hooks/watchdog?wait=1", headers=AUTH, json=watchdog("SOLO"))
        shown = client.get("/status").get_json()
    finally:
        solo.stop()

    assert elsewhere.get_json()["decision"] == "unknown_target"
    assert pruned.get_json()["run"]["result"] == "ok"
    assert solo.hosts["solo"].prunes_run() == [PRUNE]
    for key in SEED_KEYS:
        assert key in shown, key
    assert (shown["target"], shown["last_result"]) == ("solo", "ok")
    assert [target["name"] for target in shown["targets"]] == ["solo"]


GOOD_BUILD_1 = '[targets.build-1]\nhost = "build-1.example"\naliases = ["build-1.internal"]\n'


BAD_FILES = {
    "bad TOML": (
        GOOD_BUILD_1 + '[targets.build-2]\nhost = "build-2.example"\nport = 22 22\n',
        ["targets.build-2.port", "line 8"],
    ),
    "an unterminated string": (
        GOOD_BUILD_1 + '[targets.build-2]\nhost = "build-2.example\n',
        ["targets.build-2.host", "line 7"],
    ),
    "a table declared twice": (
        GOOD_BUILD_1 + '[targets.build-1]\nhost = "again"\n',
        ["targets.build-1", "twice", "line 6"],
    ),
    "text that is not UTF-8": (
        GOOD_BUILD_1.encode() + b'[targets.build-2]\nhost = "caf\xe9"\n',
        ["targets.build-2.host", "UTF-8", "line 5"],
    ),
    "an unknown key": (
        GOOD_BUILD_1 + '[targets.build-2]\nhost = "build-2.example"\nhots = "typo"\n',
        ["targets.build-2.hots", "Unknown field"],
    ),
    "an unknown key in [defaults]": (
        '[defaults]\nuntill = "24h"\n' + GOOD_BUILD_1,
        ["defaults.untill", "Unknown field"],
    ),
    "a bad name": ('[targets.Build_2]\nhost = "b"\n', ["targets.Build_2", "must match"]),
    "a missing host": ("[targets.build-2]\nport = 22\n", ["targets.build-2.host", "Missing"]),
    "a port out of range": (
        '[targets.build-2]\nhost = "b"\nport = 70000\n',
        ["targets.build-2.port", "65535"],
    ),
    "a port that is text": (
        '[targets.build-2]\nhost = "b"\nport = "ssh"\n',
        ["targets.build-2.port", "Not a valid integer"],
    ),
    "an alias shared by two targets": (
        GOOD_BUILD_1 + '[targets.build-2]\nhost = "b"\naliases = ["Build-1.Internal:9100"]\n',
        ["targets.build-2.aliases", "'build-1.internal'", "targets.build-1"],
    ),
    "two targets on one address, each on its own port": (
        GOOD_BUILD_1 + '[targets.build-2]\nhost = "BUILD-1.example"\nport = 2222\n',
        ["targets.build-2.host: 'build-1.example' is also a name, host or alias of", "build-1"],
    ),
    "a host that is another target's name": (
        GOOD_BUILD_1 + '[targets.build-2]\nhost = "build-1"\n',
        ["targets.build-2.host: 'build-1' is also", "targets.build-1"],
    ),
    "a host not in ASCII": (
        '[targets.build-2]\nhost = "\u212aaniko.example"\n',
        ["targets.build-2.host: must be ASCII", "U+212A"],
    ),
    "a key file that cannot be read": (
        '[targets.build-2]\nhost = "b"\nkey_file = "/nonexistent/id_ed25519"\n',
        ["targets.build-2.key_file", "cannot read /nonexistent/id_ed25519"],
    ),
    "no [targets]": ("[defaults]\nuser = 'ci'\n", ["targets: no [targets.NAME] table"]),
    "an empty file": ("", ["targets: no [targets.NAME] table"]),
}


@pytest.mark.parametrize(("text", "named"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_a_bad_targets_file_refuses_to_start_naming_the_file_the_target_and_the_key(
    targets_file, text, named
):
    path = targets_file(text)

    with pytest.raises(ConfigError) as raised:
        load_settings()

    assert list(raised.value.errors) == ["PRUNEHOOK_TARGETS_FILE"]
    message = str(raised.value)
    assert str(path) in message
    for part in named:
        assert part in message


def test_a_targets_file_that_cannot_be_read_refuses_to_start_naming_it(monkeypatch, tmp_path):
    for unreadable in (tmp_path / "no-such.toml", tmp_path):
        monkeypatch.setenv("PRUNEHOOK_TARGETS_FILE", str(unreadable))
        with pytest.raises(ConfigError) as raised:
            load_settings()
        assert f"PRUNEHOOK_TARGETS_FILE: cannot read {unreadable}: " in str(raised.value)


GUNICORN_REFUSALS = {
    "a port that is no port": (
        b'[targets.build-2]\nhost = "build-2.example"\nport = 0\n',
        "targets.build-2.port: Must be greater than or equal to 1",
    ),
    "text that is not UTF-8": (
        b'[targets.build-2]\nhost = "caf\xe9"\n',
        "targets.build-2.host: not UTF-8 text",
    ),
}


@pytest.mark.parametrize("how", [How.MAKE_RUN, How.PROCFILE], ids=str)
@pytest.mark.parametrize(
    ("text", "named"), GUNICORN_REFUSALS.values(), ids=GUNICORN_REFUSALS.keys()
)
def test_gunicorn_refuses_a_bad_targets_file_within_seconds_naming_it(
    tmp_path, targets_file, how, text, named
):
    path = targets_file(GOOD_BUILD_1)
    path.write_bytes(path.read_bytes() + text)
    log = tmp_path / "gunicorn.log"
    env = operator_environment(
        PRUNEHOOK_INSTANCE_PATH=str(tmp_path / "instance"),
        PRUNEHOOK_DB_PATH=str(tmp_path / "state.sqlite3"),
        PRUNEHOOK_TOKEN=TOKEN,
        PRUNEHOOK_TARGETS_FILE=str(path),
    )
    served = start_gunicorn(env, how=how, log_path=log)
    served.stops_by_itself(f"`{how}` after a bad targets file")

    assert served.process.returncode != 0
    shown = log.read_text()
    assert f"PRUNEHOOK_TARGETS_FILE: {path}: {named}" in shown
    assert "Traceback" not in shown
