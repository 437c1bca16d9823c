"""The service between the hooks and the hosts: what a sweep of many targets does with the
slots of one process (PRUNEHOOK_MAX_PARALLEL)."""

from __future__ import annotations

from tests.conftest import AUTH
from webhook.core.targets import PrunePolicy, SSHEndpoint, Target
from webhook.runs import RENEW_EVERY_S
from webhook.store import StoreUnavailable

POLICY = PrunePolicy(timeout_s=120, lease_grace_s=60)  # a lease of 180 s
NAMES = ("build-1", "build-2", "build-3")


def fleet_app(make_app, **overrides):
    targets = tuple(Target(name, SSHEndpoint("127.0.0.1"), POLICY) for name in NAMES)
    return make_app(targets_file="targets.toml", file_targets=targets, **overrides)


def test_runs_waiting_for_a_slot_are_renewed_with_the_run_ahead(make_app, fake_host, clock):
    client = fleet_app(make_app, max_parallel=1).test_client()
    fake_host.hold()  # the first run waits at the host with the only slot
    swept = client.post("/hooks/cron", headers=AUTH).get_json()
    assert [item["decision"] for item in swept["results"]] == ["started"] * 3
    fake_host.wait_until_held(1)

    clock.advance(150)  # within the first command's timeout: the lease of 180 s holds
    prunehook = client.application.extensions["prunehook"]
    first = swept["results"][0]["run_id"]
    assert prunehook.service.runs.leases.holds(first)  # what the run's next command asks
    leases = {
        shown["name"]: shown["in_flight"]["lease_expires_ts"] - clock.now
        for shown in client.get("/status").get_json()["targets"]
    }
    assert leases == {"build-1": 180, "build-2": 180, "build-3": 180}
    clock.advance(170)  # past the first claims' leases, not past the renewal
    again = client.post("/hooks/cron?target=build-2&target=build-3", headers=AUTH).get_json()
    assert [item["decision"] for item in again["results"]] == ["busy", "busy"]
    fake_host.release.set()
    prunehook.join_all(10)
    shown = client.get("/status").get_json()["targets"]
    assert [target["last_result"] for target in shown] == ["ok"] * 3


def test_with_the_database_away_a_run_tries_its_lease_once_a_renewal_period_not_per_command(
    make_app, fake_host, clock, monkeypatch
):
    client = fleet_app(make_app, max_parallel=1).test_client()
    fake_host.hold()  # the first run waits at the host, the other two are queued behind it
    swept = client.post("/hooks/cron", headers=AUTH).get_json()
    fake_host.wait_until_held(1)
    prunehook = client.application.extensions["prunehook"]
    tries = []

    def away(*args) -> bool:
        tries.append(clock.now)
        raise StoreUnavailable("no connection to PostgreSQL")

    monkeypatch.setattr(prunehook.service.store, "renew_lease", away)
    leases, first = prunehook.service.runs.leases, swept["results"][0]["run_id"]
    clock.advance(RENEW_EVERY_S)  # the queued runs' renewal is due too
    start = clock.now
    for _ in range(3):  # three commands in a row: the run goes on, asking the database once
        assert leases.holds(first)
    clock.advance(RENEW_EVERY_S)
    assert leases.holds(first)
    assert tries == [start, start + RENEW_EVERY_S]
    monkeypatch.undo()
    fake_host.release.set()
    prunehook.join_all(10)


def test_a_sweep_with_one_slot_runs_every_target_in_turn(make_app, fake_host, clock):
    app = fleet_app(make_app, max_parallel=1)
    client = app.test_client()
    client.post("/hooks/cron?wait=1", headers=AUTH)
    assert sorted(fake_host.targets) == list(NAMES)
    shown = client.get("/status").get_json()["targets"]
    assert [target["last_result"] for target in shown] == ["ok"] * 3


def test_each_target_is_pruned_with_its_own_until_and_all(make_app, fake_host):
    policies = {
        "build-1": PrunePolicy(until="72h"),
        "build-2": PrunePolicy(until="30m", prune_all=True),
        "build-3": PrunePolicy(),
    }
    targets = tuple(Target(n, SSHEndpoint(f"{n}.example"), p) for n, p in policies.items())
    client = make_app(targets_file="targets.toml", file_targets=targets).test_client()
    swept = client.post("/hooks/cron?wait=1", headers=AUTH).get_json()
    assert {item["target"]: item["run"]["command"] for item in swept["results"]} == {
        "build-1": "docker builder prune -f --filter until=72h",
        "build-2": "docker builder prune -f -a --filter until=30m",
        "build-3": "docker builder prune -f --filter until=24h",
    }
    assert dict(zip(fake_host.targets, fake_host.commands, strict=True)) == {
        "build-1": "docker builder prune -f --filter until=72h",
        "build-2": "docker builder prune -f -a --filter until=30m",
        "build-3": "docker builder prune -f --filter until=24h",
    }


def test_a_listener_that_raises_is_logged_and_the_others_are_still_told(
    make_app, fake_host, caplog
):
    app = make_app()
    listeners = app.extensions["prunehook"].service.listeners
    told: list[str] = []

    def broken(*_: object) -> None:
        raise RuntimeError("a listener's bug")

    listeners.decided[:0] = [broken]
    listeners.decided.append(lambda outcome: told.append(f"decided {outcome.answer}"))
    listeners.finished[:0] = [broken]
    listeners.finished.append(lambda target, outcome: told.append(f"finished {outcome.ok}"))

    answer = app.test_client().post("/hooks/cron?wait=1", headers=AUTH).get_json()

    assert answer["run"]["result"] == "ok"  # recorded and answered all the same
    assert sorted(told) == ["decided started", "finished True"]
    logged = [r for r in caplog.records if r.exc_info and r.getMessage().endswith(" failed")]
    assert [str(record.exc_info[1]) for record in logged] == ["a listener's bug"] * 2
