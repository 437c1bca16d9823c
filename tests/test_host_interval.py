"""The host's own interval (prunehook-guard --min-interval --state): the anti-frequency
guarantee holds even when the service's state is lost (an ephemeral disk, a new database)."""

from __future__ import annotations

import pytest

from tests.conftest import AUTH
from tests.harness import wait_for
from tests.test_disk_real import TWELVE_GB_CACHE, buildx_stand_in
from webhook import create_app
from webhook.core.decision import Answer, Result, TargetState, decide, next_eligible_ts
from webhook.core.forecast import SampleKind
from webhook.core.outcome import ErrorKind, Execution, summarize
from webhook.core.targets import PrunePolicy

REFUSAL = "prunehook-guard: last prune 120 s ago; next allowed in 3480 s\n"
POLICY = PrunePolicy(interval_s=21600, retry_after_s=600)
T0 = 1_000_000.0


def test_a_refusal_by_the_hosts_interval_is_its_own_kind_with_the_hosts_wait():
    outcome = summarize(Execution(75, "", REFUSAL, 0.1))
    assert (outcome.ok, outcome.error_kind, outcome.retry_after_s) == (
        False, ErrorKind.HOST_INTERVAL, 3480.0,
    )  # fmt: skip
    assert "next allowed in 3480 s" in (outcome.error or "")


def test_exit_75_without_the_guards_words_is_an_ordinary_failure():
    outcome = summarize(Execution(75, "", "something else\n", 0.1))
    assert (outcome.error_kind, outcome.retry_after_s) == (ErrorKind.EXIT_STATUS, None)


def test_after_a_host_refusal_the_next_try_waits_for_the_host_not_the_retry_delay():
    state = TargetState(
        last_run_id=1, last_started_ts=T0, last_finished_ts=T0, last_result=Result.FAILED,
        retry_at_ts=T0 + 3480,
    )  # fmt: skip
    assert next_eligible_ts(state, POLICY) == T0 + 3480
    assert decide(state, T0 + 600, POLICY).answer == Answer.SKIPPED  # the retry delay passed
    assert decide(state, T0 + 3480, POLICY).answer == Answer.STARTED


def test_after_a_host_refusal_a_critical_trigger_waits_for_the_host_too():
    """The host refuses any prune before its time, critical or not: a critical alert every
    critical_interval_s would only fail again, each failure a notice."""
    state = TargetState(
        last_run_id=1, last_started_ts=T0, last_finished_ts=T0, last_result=Result.FAILED,
        retry_at_ts=T0 + 3480,
    )  # fmt: skip
    past_critical_interval = T0 + POLICY.critical_interval_s
    skipped = decide(state, past_critical_interval, POLICY, critical=True)
    assert (skipped.answer, skipped.next_eligible_ts) == (Answer.SKIPPED, T0 + 3480)
    assert decide(state, T0 + 3480, POLICY, critical=True).answer == Answer.STARTED
    assert decide(state, past_critical_interval, POLICY, force=True).answer == Answer.STARTED


@pytest.fixture
def guarded_host(make_sshd, docker_engine, tmp_path):
    """A build host whose guard keeps its own interval of an hour."""
    state = tmp_path / "host-interval.state"
    options = ("--min-until", "1s", "--min-interval", "3600", "--state", str(state))
    return make_sshd(docker_host=docker_engine.host, guard_options=options)


def test_with_the_service_state_wiped_the_host_refuses_within_its_interval(
    guarded_host, env_for, tmp_path
):
    env_for(guarded_host, PRUNEHOOK_DB_PATH=str(tmp_path / "first.sqlite3"))
    first = create_app(instance_path=str(tmp_path / "instance")).test_client()
    ran = first.post("/hooks/cron?wait=1", headers=AUTH).get_json()
    assert ran["run"]["result"] == "ok"

    # the service's state is lost (an ephemeral disk): a new database, nothing remembered
    env_for(guarded_host, PRUNEHOOK_DB_PATH=str(tmp_path / "wiped.sqlite3"))
    again = create_app(instance_path=str(tmp_path / "instance")).test_client()
    refused = again.post("/hooks/cron?wait=1", headers=AUTH).get_json()

    assert (refused["run"]["result"], refused["run"]["error_kind"]) == ("failed", "host_interval")
    shown = again.get("/status").get_json()
    assert shown["last_error_kind"] == "host_interval"
    wait = shown["next_eligible_ts"] - shown["last_finished_ts"]
    assert 3500 <= wait <= 3600  # the host's time, not the 600 s retry delay
    assert again.post("/hooks/cron", headers=AUTH).get_json()["decision"] == "skipped"
    assert [line.split()[0] for line in guarded_host.prunes_run()] == ["allowed", "refused"]


def test_a_run_with_a_goal_passes_the_hosts_interval_with_both_stages_and_no_more(
    make_sshd, env_for, tmp_path
):
    """Through the real sshd, whose SSH_CONNECTION names the run's one connection: the age
    prune opens the host's interval, the run's stage 2 passes it, and the next run's first
    prune is refused."""
    docker = buildx_stand_in(tmp_path)
    state = tmp_path / "host-interval.state"
    options = ("--min-until", "1s", "--allow-keep-storage")
    options += ("--min-interval", "3600", "--state", str(state))
    host = make_sshd(docker=str(docker), guard_options=options)
    goal = {"PRUNEHOOK_MAX_CACHE": "5GB", "PRUNEHOOK_DOCKER_ROOT": str(tmp_path)}
    env_for(host, PRUNEHOOK_DB_PATH=str(tmp_path / "first.sqlite3"), **goal)
    first = create_app(instance_path=str(tmp_path / "instance")).test_client()
    ran = first.post("/hooks/cron?wait=1", headers=AUTH).get_json()
    assert (ran["run"]["result"], ran["run"]["goal_met"]) == ("ok", True)
    assert host.prunes_run() == [
        "allowed docker builder prune -f --filter until=24h",
        "allowed docker builder prune -f --keep-storage 5000000000",
    ]

    (docker.parent / "state.json").write_text(TWELVE_GB_CACHE)
    env_for(host, PRUNEHOOK_DB_PATH=str(tmp_path / "wiped.sqlite3"), **goal)
    again = create_app(instance_path=str(tmp_path / "instance")).test_client()
    refused = again.post("/hooks/cron?wait=1", headers=AUTH).get_json()
    assert (refused["run"]["result"], refused["run"]["error_kind"]) == ("failed", "host_interval")
    assert [line.split()[0] for line in host.prunes_run()] == ["allowed", "allowed", "refused"]


def test_watching_through_the_guard_never_opens_or_trips_the_hosts_interval(
    guarded_host, env_for, tmp_path
):
    state = tmp_path / "host-interval.state"
    env_for(guarded_host, PRUNEHOOK_WATCH_INTERVAL_S="1")
    app = create_app(instance_path=str(tmp_path / "instance"))
    client, service = app.test_client(), app.extensions["prunehook"].service
    assert client.post("/hooks/cron?wait=1", headers=AUTH).get_json()["run"]["result"] == "ok"
    pruned_at = state.read_text()

    def measured() -> int:
        client.post("/hooks/cron", headers=AUTH)  # inside the interval: measures only
        service.join_all(30)
        samples = service.store.samples("127.0.0.1", 0.0)
        return sum(
            sample.kind == SampleKind.WATCH and sample.disk_free is not None for sample in samples
        )

    wait_for(lambda: measured() >= 3, 60, "three measures through the guard", interval=0.2)
    assert state.read_text() == pruned_at  # no measure counts as a prune for the host
    assert [line.split()[0] for line in guarded_host.prunes_run()] == ["allowed"]
    assert all(line.startswith("allowed ") for line in guarded_host.probes_run())
