"""An Alertmanager group is one delivery however many hosts it names: the answer, the log and
the metrics say what became of them without growing with every stranger in the group."""

from __future__ import annotations

import logging

from tests.conftest import AUTH
from tests.payloads import ALERTMANAGER
from webhook.core.targets import SSHEndpoint, Target

STRANGERS = 5000


def group_naming(hosts: list[str]) -> dict:
    alert = ALERTMANAGER["alerts"][0]
    alerts = [alert | {"labels": {"alertname": "DiskFull", "instance": host}} for host in hosts]
    return ALERTMANAGER | {"alerts": alerts}


def test_a_group_of_thousands_of_unknown_hosts_is_one_item_and_one_log_line(
    make_app, fake_host, caplog
):
    targets = (Target("build-1", SSHEndpoint("build-1.example", key="k")),)
    client = make_app(targets_file="targets.toml", file_targets=targets).test_client()
    hosts = [f"stranger-{index}:9100" for index in range(STRANGERS)] + ["build-1:9100"]

    with caplog.at_level(logging.INFO, logger="webhook"):
        answer = client.post("/hooks/alertmanager", headers=AUTH, json=group_naming(hosts))

    assert answer.status_code == 202
    started, unknown = answer.get_json()["results"]
    assert (started["target"], started["decision"]) == ("build-1", "started")
    assert (unknown["target"], unknown["decision"]) == (None, "unknown_target")
    named = ", ".join(repr(host) for host in hosts[:10])
    assert unknown["reason"] == f"{STRANGERS} hosts are no configured target: {named} and 4990 more"
    assert len(answer.get_data()) < 4096
    decided = [r for r in caplog.records if getattr(r, "fields", {}).get("event") == "trigger"]
    assert [r.fields["decision"] for r in decided] == ["started", "unknown_target"]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert f"prunehook_unknown_hosts_total {STRANGERS}.0" in metrics


def test_a_cron_ping_naming_an_unknown_target_lists_the_known_ones(make_app, fake_host):
    targets = tuple(Target(f"build-{n}", SSHEndpoint(f"b{n}.example", key="k")) for n in (1, 2))
    client = make_app(targets_file="targets.toml", file_targets=targets).test_client()

    answer = client.post("/hooks/cron?target=nope", headers=AUTH)

    assert answer.status_code == 422
    assert "(known: build-1, build-2)" in answer.get_json()["message"]
    assert fake_host.commands == []


def test_one_unknown_host_is_named_as_before(make_app, fake_host):
    targets = (Target("build-1", SSHEndpoint("build-1.example", key="k")),)
    client = make_app(targets_file="targets.toml", file_targets=targets).test_client()

    answer = client.post("/hooks/alertmanager", headers=AUTH, json=group_naming(["build-9:9100"]))

    (item,) = answer.get_json()["results"]
    assert item["reason"] == "host 'build-9:9100' is no configured target"
    assert fake_host.commands == []
