"""A run's stages and probes, decided by the service against a host simulated as numbers.

`DiskHost` (tests/disk_host.py) stands in for the SSH runner: a disk and a build cache as
numbers that its prunes change as BuildKit would. tests/test_disk_real.py runs the same
contract against a real dockerd on a small real filesystem.
"""

from __future__ import annotations

import itertools

import pytest

from tests.disk_host import BUILDX_DEPRECATION, DF, GB, ROOT, DiskHost
from webhook.core.disk import FreeGoal
from webhook.core.outcome import ErrorKind, Execution
from webhook.core.targets import Fleet, PrunePolicy, SSHEndpoint, Target
from webhook.core.triggers import Source, Trigger
from webhook.remote.session import CommandSession
from webhook.runs import RunSteps, run_stages
from webhook.service import PruneService
from webhook.store.sqlite import SQLiteStore


def target(**policy) -> Target:
    return Target("build-1", SSHEndpoint("build-1"), PrunePolicy(docker_root=ROOT, **policy))


def run_once(host: DiskHost, tmp_path, **policy):
    """One cron run of the target through the service; the run as the store keeps it."""
    service = PruneService(Fleet((target(**policy),)), SQLiteStore(tmp_path / "s.db"), host)
    (result,) = service.handle(Trigger(Source.CRON, True, "cron"), wait=True).results
    assert result.run is not None
    return result.run


def test_without_goals_a_run_measures_before_and_after_its_one_stage(tmp_path):
    host = DiskHost(young=20 * GB, old=10 * GB)
    run = run_once(host, tmp_path)
    assert host.commands == [
        DF,
        "docker system df",
        "docker version",
        "docker buildx version",
        "docker builder prune -f --filter until=24h",
        DF,
        "docker system df",
    ]
    assert [step.name for step in run.steps] == [
        "disk before",
        "cache before",
        "docker version",
        "buildx version",
        "stage 1",
        "disk after stage 1",
        "cache after stage 1",
    ]
    assert (run.result, run.reclaimed, run.reclaimed_bytes) == ("ok", "10GB", 10 * GB)
    assert (run.disk_free_before, run.disk_free_after, run.freed_bytes) == (
        10 * GB, 20 * GB, 10 * GB,
    )  # fmt: skip
    assert (run.disk_size, run.cache_before, run.cache_after) == (100 * GB, 30 * GB, 20 * GB)
    assert (run.goal_met, run.free_short_bytes, run.keep_storage_bytes) == (None, None, None)
    assert (run.docker_version, run.buildx_version, run.notes) == ("28.2.2", None, ())
    assert run.steps[4].stdout_tail == "Total reclaimed space: 10GB\n"


def test_goals_met_by_the_age_prune_stop_there(tmp_path):
    host = DiskHost(young=5 * GB, old=25 * GB)
    run = run_once(host, tmp_path, max_cache=10 * GB, min_free=FreeGoal(percent=20))
    assert host.prunes() == ["docker builder prune -f --filter until=24h"]
    assert (run.goal_met, run.free_short_bytes, run.cache_over_bytes) == (True, 0, 0)


def test_a_cache_over_max_cache_after_the_age_prune_is_pruned_down_to_it(tmp_path):
    host = DiskHost(young=30 * GB, old=2 * GB)
    run = run_once(host, tmp_path, max_cache=10 * GB)
    assert host.prunes() == [
        "docker builder prune -f --filter until=24h",
        "docker builder prune -f --keep-storage 10000000000",
    ]
    assert host.cache == 10 * GB
    assert (run.result, run.goal_met, run.cache_over_bytes) == ("ok", True, 0)
    assert (run.keep_storage_bytes, run.cache_after) == (10 * GB, 10 * GB)
    assert (run.freed_bytes, run.reclaimed_bytes, run.reclaimed) == (22 * GB, 22 * GB, "22GB")
    assert [step.name for step in run.steps][-3:] == [
        "stage 2",
        "disk after stage 2",
        "cache after stage 2",
    ]


def test_too_little_free_space_prunes_the_cache_by_what_is_missing(tmp_path):
    host = DiskHost(size=100 * GB, others=70 * GB, young=25 * GB)  # 5 GB free
    run = run_once(host, tmp_path, min_free=FreeGoal(percent=15))  # 15 GB wanted
    assert host.prunes()[-1] == "docker builder prune -f --keep-storage 15000000000"
    assert (host.free, run.goal_met, run.free_short_bytes) == (15 * GB, True, 0)


def test_stage_two_is_bounded_by_the_disk_as_measured_after_stage_one(tmp_path):
    # stage 1 frees 10 GB of cache and 5 GB of other data: 15 GB free, 5 GB short of 20 GB
    host = DiskHost(others=60 * GB, young=30 * GB, old=10 * GB, others_freed_by_stage_1=5 * GB)
    run = run_once(host, tmp_path, min_free=FreeGoal(size=20 * GB))
    assert run.keep_storage_bytes == 25 * GB  # not 20 GB, as the disk before stage 1 says
    assert host.prunes()[-1] == f"docker builder prune -f --keep-storage {25 * GB}"
    assert (run.goal_met, run.disk_free_after) == (True, 20 * GB)


def test_a_connection_lost_during_the_version_probe_ends_the_run_with_that_error(tmp_path):
    host = DiskHost()
    lost = Execution(None, "", "", 0.1, ErrorKind.SSH_ERROR, "connection lost: EOF")
    host.answers["docker version"] = lost
    run = run_once(host, tmp_path)
    assert host.prunes() == []
    assert (run.result, run.error_kind, run.error) == ("failed", "ssh_error", lost.error)
    assert [step.name for step in run.steps][-1] == "docker version"


def test_both_goals_take_the_smaller_bound_and_all_adds_a(tmp_path):
    host = DiskHost(size=100 * GB, others=70 * GB, young=25 * GB)
    run_once(host, tmp_path, max_cache=8 * GB, min_free=FreeGoal(size=15 * GB), prune_all=True)
    assert host.prunes() == [
        "docker builder prune -f -a --filter until=24h",
        "docker builder prune -f -a --keep-storage 8000000000",
    ]


def test_free_space_no_prune_can_reach_is_reported_missed_and_by_how_much(tmp_path):
    host = DiskHost(size=100 * GB, others=90 * GB, young=5 * GB)  # 5 GB free, 5 GB cache
    run = run_once(host, tmp_path, min_free=FreeGoal(size=30 * GB))
    assert host.prunes()[-1] == "docker builder prune -f --keep-storage 0"
    assert (run.result, run.goal_met, run.free_short_bytes) == ("ok", False, 20 * GB)
    assert (run.freed_bytes, run.disk_free_after) == (5 * GB, 10 * GB)


def test_with_no_cache_left_there_is_no_second_stage_and_the_run_says_why(tmp_path):
    host = DiskHost(size=100 * GB, others=95 * GB, young=0)
    run = run_once(host, tmp_path, min_free=FreeGoal(size=10 * GB))
    assert len(host.prunes()) == 1
    assert run.goal_met is False
    assert run.notes == ("stage 2 not run: no build cache is left to prune",)


def test_buildx_output_and_its_deprecation_warning_are_read_not_failed(tmp_path):
    host = DiskHost(young=30 * GB, old=2 * GB, buildx=True)
    run = run_once(host, tmp_path, max_cache=10 * GB)
    assert (run.result, run.error, run.buildx_version) == ("ok", None, "0.24.0")
    assert run.reclaimed_bytes == 22 * GB
    assert "keep-storage flag has been changed" in run.stderr_tail
    assert run.steps[-3].stderr_tail == BUILDX_DEPRECATION


def test_a_probe_that_fails_leaves_the_run_going_and_says_so(tmp_path):
    host = DiskHost(young=20 * GB, old=10 * GB)
    refused = Execution(1, "", "permission denied while trying to connect\n", 0.01)
    host.answers["docker system df"] = refused
    run = run_once(host, tmp_path, max_cache=5 * GB)
    assert host.prunes() == ["docker builder prune -f --filter until=24h"]
    assert (run.result, run.cache_before, run.cache_after) == ("ok", None, None)
    assert (run.freed_bytes, run.goal_met) == (10 * GB, None)
    assert run.notes == (
        "cache before: rc=1: permission denied while trying to connect",
        "cache after stage 1: rc=1: permission denied while trying to connect",
        "a goal could not be measured after stage 1: no stage 2",
    )


def test_df_output_it_cannot_read_is_noted_and_the_cache_goal_still_decides(tmp_path):
    host = DiskHost(young=30 * GB)
    host.answers[DF] = Execution(0, "Filesystem Size Avail\n/dev/sda 20G 10G\n", "", 0.01)
    run = run_once(host, tmp_path, max_cache=10 * GB)
    assert len(host.prunes()) == 2
    assert (run.freed_bytes, run.disk_free_before, run.goal_met) == (None, None, True)
    assert "disk before: df's output not understood" in run.notes


def test_a_host_that_cannot_be_reached_runs_nothing_and_fails_with_why(tmp_path):
    host = DiskHost()
    host.answers[DF] = Execution(None, "", "", 0.5, ErrorKind.CONNECT_REFUSED, "refused", False)
    run = run_once(host, tmp_path, max_cache=1)
    assert host.commands == [DF]  # one try: the session does not connect again
    assert (run.result, run.error_kind, run.error) == ("failed", "connect_refused", "refused")
    assert (run.goal_met, run.freed_bytes) == (None, None)


def test_a_failed_age_prune_is_measured_after_but_no_second_stage_runs(tmp_path):
    host = DiskHost(young=30 * GB)
    stage_1 = "docker builder prune -f --filter until=24h"
    host.answers[stage_1] = Execution(1, "", "Error response from daemon: no\n", 0.1)
    run = run_once(host, tmp_path, max_cache=10 * GB)
    assert host.prunes() == [stage_1]
    assert (run.result, run.error_kind, run.goal_met) == ("failed", "docker_error", False)
    assert run.steps[-1].name == "cache after stage 1"


def test_docker_that_stops_answering_is_not_probed_again_in_the_run(tmp_path):
    host = DiskHost(young=30 * GB)
    stuck = Execution(None, "", "", 30.0, ErrorKind.TIMEOUT, "timeout: no result within 30s")
    host.answers["docker system df"] = stuck
    run = run_once(host, tmp_path, max_cache=10 * GB)
    assert "docker version" not in host.commands
    assert host.commands.count("docker system df") == 1
    assert host.prunes() == ["docker builder prune -f --filter until=24h"]  # still tried
    assert "cache after stage 1: not probed, Docker did not answer earlier in this run" in (
        run.notes
    )


def test_versions_are_probed_once_per_target_in_a_process(tmp_path):
    host = DiskHost()
    service = PruneService(Fleet((target(),)), SQLiteStore(tmp_path / "s.db"), host)
    cron = Trigger(Source.CRON, True, "cron")
    service.handle(cron, force=True, wait=True)
    first = list(host.commands)
    (result,) = service.handle(cron, force=True, wait=True).results
    outcome = result.run
    assert "docker version" in first
    assert "docker version" not in host.commands[len(first) :]
    assert outcome.docker_version == "28.2.2"


def test_a_run_whose_target_was_taken_over_stops_before_its_next_command(tmp_path):
    host = DiskHost(young=30 * GB)
    owns = itertools.chain([True] * 5, itertools.repeat(False))  # through stage 1
    chosen = target(max_cache=10 * GB)
    outcome, _ = run_stages(RunSteps(CommandSession(host, chosen), chosen, lambda: next(owns)))
    assert host.prunes() == ["docker builder prune -f --filter until=24h"]
    assert outcome.notes == ("stopped before disk after stage 1: a newer run owns the target",)
    assert outcome.ok and outcome.goal_met is None


@pytest.mark.parametrize("policy", [{}, {"max_cache": GB, "min_free": FreeGoal(percent=50)}])
def test_the_lease_is_renewed_before_every_command(tmp_path, policy):
    host = DiskHost(young=30 * GB)
    renewals = []
    chosen = target(**policy)
    steps = RunSteps(CommandSession(host, chosen), chosen, lambda: renewals.append(1) or True)
    outcome, _ = run_stages(steps)
    assert outcome.ok
    assert len(renewals) == len(host.commands)


def test_a_step_that_exits_non_zero_says_why_not_null(tmp_path):
    host = DiskHost(young=20 * GB)
    denied = "prunehook-guard: denied: not an allowed command\n"
    host.answers["docker builder prune -f --filter until=24h"] = Execution(126, "", denied, 0.1)
    run = run_once(host, tmp_path)
    (stage,) = [step for step in run.steps if step.name == "stage 1"]
    assert (stage.rc, stage.error_kind) == (126, ErrorKind.EXIT_STATUS)
    assert stage.error == "rc=126: prunehook-guard: denied: not an allowed command"
    assert (run.result, run.error) == ("failed", stage.error)
