"""The critical path (DESIGN.md, "Disk-aware pruning"): a nearly full disk may prune inside
the interval, but an alert storm never becomes a prune storm: at most one prune starts per
`critical_interval_s`, whatever arrives. Time is the injected clock."""

from __future__ import annotations

import threading

import pytest

from tests.conftest import AUTH, Clock, FakeHost
from tests.disk_host import GB, DiskHost
from tests.payloads import ALERTMANAGER
from webhook.core.decision import Answer
from webhook.core.disk import FreeGoal
from webhook.core.outcome import Execution
from webhook.core.targets import Fleet, PrunePolicy, SSHEndpoint, Target
from webhook.core.triggers import Source, Trigger
from webhook.service import PruneService
from webhook.store.sqlite import SQLiteStore

CRITICAL_INTERVAL_S = 900
INTERVAL_S = 21600
# df as the run measures it: 99% of 100 GB used, and 60%
FULL_DF = "   1B-blocks       Avail\n100000000000 1000000000\n"
HALF_DF = "   1B-blocks       Avail\n100000000000 40000000000\n"


@pytest.fixture
def fake_host(fake_host):
    """The host's own measure agrees with the critical triggers of these tests."""
    fake_host.df = FULL_DF
    return fake_host


def watchdog(client, used_percent: float, host: str = "build-1", wait: bool = True):
    body = {"host": host, "mount": "/var/lib/docker", "used_percent": used_percent}
    query = "?wait=1" if wait else ""
    return client.post(f"/hooks/watchdog{query}", headers=AUTH, json=body).get_json()


def alertmanager(client, severity: str, host: str = "build-1:9100"):
    alert = ALERTMANAGER["alerts"][0] | {
        "labels": {"alertname": "BuildHostDiskFull", "instance": host, "severity": severity}
    }
    body = ALERTMANAGER | {"alerts": [alert]}
    return client.post("/hooks/alertmanager?wait=1", headers=AUTH, json=body).get_json()


def test_an_alert_storm_prunes_once_per_critical_interval(client, fake_host, clock):
    assert watchdog(client, 80)["decision"] == "started"  # the first prune ever
    clock.advance(60)
    inside = [watchdog(client, 99)["decision"] for _ in range(10)]
    assert inside == ["skipped"] * 10
    skipped = watchdog(client, 99)
    assert "critical_interval_s" in skipped["reason"]
    assert skipped["next_eligible_ts"] == clock.now - 60 + CRITICAL_INTERVAL_S

    clock.advance(CRITICAL_INTERVAL_S - 60)
    critical = watchdog(client, 99)
    assert (critical["decision"], critical["run"]["result"]) == ("started", "ok")
    assert critical["reason"].startswith("critical")
    storm = [watchdog(client, 99.5)["decision"] for _ in range(10)]
    storm += [alertmanager(client, "critical")["decision"] for _ in range(10)]
    assert storm == ["skipped"] * 20
    assert watchdog(client, 80)["reason"] == "interval not due yet"  # not critical: 6 h

    clock.advance(CRITICAL_INTERVAL_S)
    assert alertmanager(client, "critical")["decision"] == "started"
    assert alertmanager(client, "critical")["decision"] == "skipped"
    assert len(fake_host.commands) == 3


def test_under_the_critical_percent_or_without_severity_critical_the_interval_holds(
    client, fake_host, clock
):
    watchdog(client, 99)
    clock.advance(CRITICAL_INTERVAL_S * 3)
    assert watchdog(client, 94.9)["decision"] == "skipped"
    assert alertmanager(client, "warning")["decision"] == "skipped"
    assert watchdog(client, 95)["decision"] == "started"  # at the percent, it is critical
    assert len(fake_host.commands) == 2


def test_critical_alerts_arriving_at_once_start_one_prune(app, fake_host, clock):
    watchdog(app.test_client(), 99)
    clock.advance(CRITICAL_INTERVAL_S)
    decisions: list[str] = []
    barrier = threading.Barrier(12)

    def alert() -> None:
        client = app.test_client()  # a client per thread, as separate senders are
        barrier.wait(30)
        decisions.append(watchdog(client, 99)["decision"])

    threads = [threading.Thread(target=alert) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(decisions) == 12
    assert decisions.count("started") == 1
    assert set(decisions) <= {"started", "busy", "skipped"}
    assert len(fake_host.commands) == 2


def test_each_targets_own_critical_percent_and_interval_count(make_app, fake_host, clock):
    strict = PrunePolicy(critical_percent=90, critical_interval_s=300)
    targets = (
        Target("build-1", SSHEndpoint("build-1.example", key="k"), strict),
        Target("build-2", SSHEndpoint("build-2.example", key="k")),
    )
    client = make_app(targets_file="targets.toml", file_targets=targets).test_client()
    for host in ("build-1", "build-2"):
        watchdog(client, 80, host)
    clock.advance(300)
    assert watchdog(client, 92, "build-1")["decision"] == "started"
    assert watchdog(client, 92, "build-2")["decision"] == "skipped"  # 95% there
    assert alertmanager(client, "critical", "build-2:9100")["decision"] == "skipped"  # 900 s
    clock.advance(600)
    # in one group, build-2's critical alert is critical for build-2, not for build-1
    alerts = [
        ALERTMANAGER["alerts"][0] | {"labels": {"instance": host, "severity": severity}}
        for host, severity in (("build-1:9100", "warning"), ("build-2:9100", "critical"))
    ]
    body = ALERTMANAGER | {"alerts": alerts}
    answer = client.post("/hooks/alertmanager?wait=1", headers=AUTH, json=body).get_json()
    assert [(r["target"], r["decision"]) for r in answer["results"]] == [
        ("build-1", "skipped"),
        ("build-2", "started"),
    ]
    assert fake_host.targets == ["build-1", "build-2", "build-1", "build-2"]


def test_a_critical_trigger_the_hosts_own_measure_contradicts_prunes_nothing(
    client, fake_host, clock
):
    fake_host.df = HALF_DF
    assert watchdog(client, 80)["decision"] == "started"
    clock.advance(CRITICAL_INTERVAL_S)
    answer = watchdog(client, 100)
    assert answer["decision"] == "started"
    run = answer["run"]
    assert run["result"] == "ok"
    assert any("60.0% used, under critical_percent (95%)" in note for note in run["notes"])
    assert len(fake_host.commands) == 1  # the first prune only
    # and it counts as the critical start: the next one waits critical_interval_s
    assert watchdog(client, 100)["decision"] == "skipped"
    clock.advance(CRITICAL_INTERVAL_S)
    fake_host.df = FULL_DF
    assert watchdog(client, 100)["decision"] == "started"
    assert len(fake_host.commands) == 2


def test_stale_critical_alerts_on_a_disk_that_is_not_critical_never_push_the_due_prune_away(
    client, fake_host, clock
):
    """A misrouted alert repeating every critical_interval_s: each start is checked and
    prunes nothing, and the age prune still comes an interval after the last one."""
    fake_host.df = HALF_DF
    assert client.post("/hooks/cron?wait=1", headers=AUTH).get_json()["decision"] == "started"
    pruned_at = clock.now
    for _ in range(INTERVAL_S // CRITICAL_INTERVAL_S - 1):
        clock.advance(CRITICAL_INTERVAL_S)
        stale = watchdog(client, 100)
        assert (stale["decision"], stale["run"]["result"]) == ("started", "ok")
        cron = client.post("/hooks/cron", headers=AUTH).get_json()
        assert (cron["decision"], cron["next_eligible_ts"]) == ("skipped", pruned_at + INTERVAL_S)
    assert len(fake_host.commands) == 1
    shown = client.get("/status", headers=AUTH).get_json()
    assert (shown["last_run_ts"], shown["interval_from_ts"]) == (clock.now, pruned_at)

    clock.advance(CRITICAL_INTERVAL_S)
    assert clock.now == pruned_at + INTERVAL_S
    due = client.post("/hooks/cron?wait=1", headers=AUTH).get_json()
    assert (due["decision"], due["reason"], due["run"]["result"]) == ("started", "due", "ok")
    assert len(fake_host.commands) == 2


def test_a_critical_trigger_prunes_under_the_percent_when_a_goal_is_missed(
    make_app, fake_host, clock
):
    fake_host.df = HALF_DF  # 40 GB free, short of min_free
    goal = PrunePolicy(min_free=FreeGoal(size=50 * 1000**3))
    target = Target("build-1", SSHEndpoint("build-1.example", key="k"), goal)
    client = make_app(targets_file="targets.toml", file_targets=(target,)).test_client()
    watchdog(client, 80)
    first = len(fake_host.commands)
    clock.advance(CRITICAL_INTERVAL_S)
    assert watchdog(client, 99)["decision"] == "started"
    assert fake_host.commands[first] == "docker builder prune -f --filter until=24h"


def test_a_run_on_a_disk_over_critical_percent_with_its_goals_met_prunes_it_under(tmp_path):
    """min_free 3% is met at 96% used: stopped at the goals, a run would free nothing, and a
    critical one would come every critical_interval_s. Due or critical, a run prunes to
    critical_percent (95) instead, least recently used cache first."""
    host = DiskHost(size=100 * GB, others=76 * GB, young=20 * GB)  # 4 GB free: 96 % used
    policy = PrunePolicy(min_free=FreeGoal(percent=3), critical_interval_s=CRITICAL_INTERVAL_S)
    target = Target("build-1", SSHEndpoint("127.0.0.1"), policy)
    clock = Clock()
    store = SQLiteStore(tmp_path / "state.sqlite3")
    service = PruneService(Fleet((target,)), store, host, clock=clock)
    service.handle(Trigger(Source.CRON, True, "cron ping"))  # due: the first run
    service.join_all(30)
    assert host.prunes()[-1] == f"docker builder prune -f --keep-storage {int(19 * GB - 1)}"
    assert host.free > 5 * GB  # under 95 % used
    host.others += 2 * GB  # builds fill it again: 96 % used
    clock.advance(CRITICAL_INTERVAL_S)
    alert = Trigger(Source.WATCHDOG, True, "96% used", "build-1:/", ("build-1",), used_percent=96)
    assert service.handle(alert).answer == Answer.STARTED  # inside the interval
    service.join_all(30)
    assert host.free >= 5 * GB  # Docker prints the cache rounded: a byte may stay


def test_a_due_prune_is_not_held_to_the_critical_check(client, fake_host, clock):
    fake_host.df = HALF_DF
    watchdog(client, 80)
    clock.advance(6 * 3600)  # the interval is due: no confirmation asked
    assert watchdog(client, 99)["decision"] == "started"
    assert len(fake_host.commands) == 2


def test_a_failed_prunes_retry_survives_a_critical_alert_the_host_contradicts(
    make_app, fake_host, clock
):
    fake_host.df = HALF_DF
    client = make_app(retry_after_s=3600).test_client()  # a retry after critical_interval_s
    fake_host.execution = Execution(1, "", "Error response from daemon: disk I/O error\n", 0.1)
    failed = watchdog(client, 80)
    assert (failed["decision"], failed["run"]["result"]) == ("started", "failed")
    retry_at = client.get("/status", headers=AUTH).get_json()["next_eligible_ts"]
    assert retry_at == clock.now + 3600

    clock.advance(CRITICAL_INTERVAL_S)
    stale = watchdog(client, 100)
    assert (stale["decision"], stale["run"]["result"]) == ("started", "ok")  # pruned nothing
    shown = client.get("/status", headers=AUTH).get_json()
    assert (shown["last_result"], shown["next_eligible_ts"]) == ("failed", retry_at)
    assert "disk I/O error" in shown["last_error"]

    clock.advance(retry_at - clock.now)
    fake_host.execution = FakeHost().execution
    retry = client.post("/hooks/cron?wait=1", headers=AUTH).get_json()
    assert (retry["decision"], retry["run"]["result"]) == ("started", "ok")
    assert len(fake_host.commands) == 2


def test_a_due_prune_a_critical_alert_starts_counts_from_its_start_while_in_flight(
    client, fake_host, clock
):
    fake_host.df = HALF_DF
    watchdog(client, 80)
    clock.advance(INTERVAL_S)
    fake_host.hold()
    answer = watchdog(client, 99, wait=False)
    assert (answer["decision"], answer["reason"]) == ("started", "due")
    fake_host.wait_until_held(1)
    shown = client.get("/status", headers=AUTH).get_json()
    assert shown["interval_from_ts"] == shown["last_run_ts"] == clock.now
    fake_host.release.set()
