"""A trigger that concerns many targets: an Alertmanager group is one delivery however many
hosts it names, and a sweep says what became of each target, even when the state database
fails halfway through it."""

from __future__ import annotations

import logging
import sqlite3

from tests.conftest import AUTH
from tests.payloads import ALERTMANAGER
from webhook.core.targets import SSHEndpoint, Target
from webhook.store import sqlite as sqlite_store
from webhook.web.context import prunehook

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


def test_a_sweep_the_database_fails_halfway_answers_what_happened_to_each_target(
    make_app, fake_host, monkeypatch
):
    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT_MS", 200)
    targets = tuple(Target(f"build-{n}", SSHEndpoint(f"b{n}.example", key="k")) for n in (1, 2, 3))
    app = make_app(targets_file="targets.toml", file_targets=targets)
    store = prunehook(app).service.store
    locker = sqlite3.connect(prunehook(app).settings.server.db_path, isolation_level=None)
    claim = store.claim

    def claim_then_lock(*args, **kwargs):
        # another process takes the database for a long write right after the first claim
        run_id = claim(*args, **kwargs)
        if not locker.in_transaction:
            locker.execute("BEGIN EXCLUSIVE")
        return run_id

    monkeypatch.setattr(store, "claim", claim_then_lock)
    fake_host.hold()
    try:
        answer = app.test_client().post("/hooks/cron", headers=AUTH)
    finally:
        locker.execute("ROLLBACK")
        fake_host.release.set()

    assert (answer.status_code, answer.headers["Retry-After"]) == (503, "5")
    body = answer.get_json()
    assert [(r["target"], r["decision"]) for r in body["results"]] == [
        ("build-1", "started"),
        ("build-2", "unavailable"),
        ("build-3", "unavailable"),
    ]
    assert "retry" in body["results"][1]["reason"]
    prunehook(app).join_all(10)
    assert fake_host.targets == ["build-1"]
    # the sender's retry starts the rest, and build-1 is not pruned twice
    monkeypatch.setattr(store, "claim", claim)
    retry = app.test_client().post("/hooks/cron?wait=1", headers=AUTH).get_json()
    assert [r["decision"] for r in retry["results"]] == ["skipped", "started", "started"]
    assert sorted(fake_host.targets) == ["build-1", "build-2", "build-3"]


def test_a_sweep_the_database_fails_for_entirely_is_503(make_app, fake_host, monkeypatch):
    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT_MS", 200)
    targets = tuple(Target(f"build-{n}", SSHEndpoint(f"b{n}.example", key="k")) for n in (1, 2))
    app = make_app(targets_file="targets.toml", file_targets=targets)
    locker = sqlite3.connect(prunehook(app).settings.server.db_path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        answer = app.test_client().post("/hooks/cron", headers=AUTH)
    finally:
        locker.execute("ROLLBACK")
    assert (answer.status_code, answer.get_json()["error"]) == (503, "database_unavailable")
    assert fake_host.commands == []
