"""What operators see of the disk: /status, the run with its tails, the page, /metrics."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import AUTH, START
from tests.disk_host import GB, DiskHost
from tests.test_metrics import ONE, metrics_of
from tests.test_status_page import BROWSER
from webhook import create_app
from webhook.core.disk import FreeGoal
from webhook.core.outcome import ErrorKind, Execution
from webhook.core.targets import PrunePolicy, SSHEndpoint, Target


@pytest.fixture
def disk_app(make_settings, clock, tmp_path):
    """The single env target with goals, on a `DiskHost` of 100 GB: 10 GB free, 30 GB of
    cache (2 GB of it older than `until`)."""
    host = DiskHost(size=100 * GB, others=60 * GB, young=28 * GB, old=2 * GB)

    def make(**settings):
        values = {"max_cache": 10 * GB, "min_free": FreeGoal(percent=25)} | settings
        app = create_app(
            make_settings(docker_root="/srv/docker", **values),
            execute=host,
            clock=clock,
            instance_path=str(tmp_path / "instance"),
        )
        return app, host

    return make


def prune(client):
    return client.post("/hooks/cron?wait=1", headers=AUTH).get_json()["run"]


def test_status_shows_the_goals_the_last_measurement_and_each_runs_disk(disk_app):
    app, _ = disk_app()
    client = app.test_client()
    run = prune(client)

    shown = client.get("/status").get_json()
    assert (shown["max_cache"], shown["min_free"], shown["docker_root"]) == (
        10 * GB, "25%", "/srv/docker",
    )  # fmt: skip
    assert (shown["critical_percent"], shown["critical_interval_s"]) == (95, 900)
    assert (shown["disk_size_bytes"], shown["disk_free_bytes"], shown["build_cache_bytes"]) == (
        100 * GB, 30 * GB, 10 * GB,
    )  # fmt: skip
    assert (shown["measured_ts"], shown["last_freed_bytes"]) == (START, 20 * GB)
    assert (shown["last_goal_met"], shown["last_free_short_bytes"]) == (True, 0)
    (listed,) = shown["recent_runs"]
    assert listed == run
    assert (run["freed_bytes"], run["disk_free_before"], run["disk_free_after"]) == (
        20 * GB, 10 * GB, 30 * GB,
    )  # fmt: skip
    assert (run["cache_before"], run["cache_after"], run["keep_storage_bytes"]) == (
        30 * GB, 10 * GB, 10 * GB,
    )  # fmt: skip
    assert (run["goal_met"], run["free_short_bytes"], run["cache_over_bytes"]) == (True, 0, 0)
    stages = [step["name"] for step in run["steps"] if step["name"].startswith("stage")]
    assert stages == ["stage 1", "stage 2"]
    assert all("stdout_tail" not in step for step in run["steps"])  # tails: the run's own URL


def test_a_run_with_every_steps_output_tail(disk_app):
    app, _ = disk_app()
    client = app.test_client()
    run_id = prune(client)["id"]

    response = client.get(f"/status/127.0.0.1/runs/{run_id}", headers=AUTH)

    assert response.status_code == 200
    shown = response.get_json()
    stage_2 = next(step for step in shown["steps"] if step["name"] == "stage 2")
    assert stage_2["command"] == "docker builder prune -f --keep-storage 10000000000"
    assert stage_2["stdout_tail"] == "Total reclaimed space: 18GB\n"
    assert shown["steps"][0]["stdout_tail"].endswith("100000000000 10000000000\n")
    for missing, error in (
        (f"/status/127.0.0.1/runs/{run_id + 1}", "unknown_run"),
        (f"/status/nope/runs/{run_id}", "unknown_target"),
    ):
        answer = client.get(missing, headers=AUTH)
        assert (answer.status_code, answer.get_json()["error"]) == (404, error)


@pytest.mark.parametrize("run_id", [2**63 - 1, 2**63, 2**64, 10**30])
def test_a_run_id_past_the_stores_integers_is_404_with_nothing_logged(disk_app, caplog, run_id):
    """SQLite (and PostgreSQL's bigint) hold 64-bit signed ids: a larger one is no run."""
    app, _ = disk_app()
    with caplog.at_level(logging.WARNING):
        answer = app.test_client().get(f"/status/127.0.0.1/runs/{run_id}", headers=AUTH)
    assert (answer.status_code, answer.get_json()["error"]) == (404, "unknown_run")
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


def test_a_missed_goal_shows_by_how_much(disk_app):
    app, _ = disk_app(min_free=FreeGoal(size=90 * GB))
    client = app.test_client()
    run = prune(client)
    assert (run["goal_met"], run["free_short_bytes"], run["keep_storage_bytes"]) == (
        False, 50 * GB, 0,
    )  # fmt: skip
    shown = client.get("/status").get_json()
    assert (shown["last_goal_met"], shown["last_free_short_bytes"]) == (False, 50 * GB)
    page = client.get("/status", headers={"Accept": BROWSER}).get_data(as_text=True)
    assert "missed by 50GB" in page
    assert "goals missed" in page


def test_the_page_charts_disk_free_and_cache_per_run_with_the_goals(disk_app, clock):
    app, host = disk_app()
    client = app.test_client()
    prune(client)
    clock.advance(21600)
    host.young += 15 * GB  # builds since
    prune(client)

    page = client.get("/status", headers={"Accept": BROWSER}).get_data(as_text=True)

    assert "Disk after each run" in page
    assert page.count('class="disk-free"') == 2
    assert page.count('class="disk-cache"') == 2
    assert "run 1: 30GB free of 100GB, cache 10GB, freed 20GB" in page
    assert "freed 20GB" in page and "freed 15GB" in page
    assert page.count("goals met") == 2
    assert 'class="goal-line"' in page and 'class="cache-line"' in page
    assert "25%" in page  # min_free, on its card and the line


def test_a_run_that_could_not_reach_the_host_keeps_the_last_measurement(disk_app, clock):
    app, host = disk_app()
    client = app.test_client()
    prune(client)
    clock.advance(21600)
    refused = Execution(None, "", "", 0.1, ErrorKind.CONNECT_REFUSED, "refused", False)
    host.answers["df -B1 --output=size,avail /srv/docker"] = refused

    run = prune(client)

    assert (run["result"], run["error_kind"], run["steps"][0]["error_kind"]) == (
        "failed", "connect_refused", "connect_refused",
    )  # fmt: skip
    shown = client.get("/status").get_json()
    assert (shown["disk_free_bytes"], shown["measured_ts"]) == (30 * GB, START)
    assert shown["last_goal_met"] is None
    page = client.get("/status", headers={"Accept": BROWSER}).get_data(as_text=True)
    assert page.count('class="disk-free"') == 1  # the run that measured nothing has no column


def test_metrics_show_the_disk_the_cache_what_was_freed_and_the_goal(disk_app, clock):
    app, host = disk_app()
    client = app.test_client()
    prune(client)

    seen = metrics_of(client)

    assert seen[("prunehook_disk_free_bytes", ONE)] == 30 * GB
    assert seen[("prunehook_disk_size_bytes", ONE)] == 100 * GB
    assert seen[("prunehook_build_cache_bytes", ONE)] == 10 * GB
    assert seen[("prunehook_freed_bytes_total", ONE)] == 20 * GB
    assert seen[("prunehook_goal_met", ONE)] == 1

    clock.advance(21600)
    host.others += 25 * GB  # the disk filled with something else than cache: 5 GB free
    prune(client)  # all 10 GB of cache go; 15 GB free is still under 25%
    seen = metrics_of(client)
    assert seen[("prunehook_goal_met", ONE)] == 0
    assert seen[("prunehook_disk_free_bytes", ONE)] == 15 * GB
    assert seen[("prunehook_freed_bytes_total", ONE)] == 30 * GB

    clock.advance(21600)
    host.others += 5 * GB  # and fills on: a run that frees nothing counts nothing
    prune(client)
    assert metrics_of(client)[("prunehook_freed_bytes_total", ONE)] == 30 * GB


def test_without_goals_there_is_no_goal_gauge(disk_app):
    app, _ = disk_app(max_cache=None, min_free=None)
    client = app.test_client()
    prune(client)
    seen = metrics_of(client)
    assert ("prunehook_goal_met", ONE) not in seen
    assert seen[("prunehook_disk_free_bytes", ONE)] == 12 * GB  # the old 2 GB pruned


def test_the_fleet_page_shows_each_hosts_disk_and_a_missed_goal(make_app, fake_host, clock):
    from tests.conftest import FAKE_DF
    from tests.test_status_page import prune

    policy = PrunePolicy(min_free=FreeGoal(percent=10))
    targets = tuple(
        Target(name, SSHEndpoint(f"{name}.example", key="k"), policy)
        for name in ("alpha", "bravo", "charlie")
    )
    client = make_app(targets_file="targets.toml", file_targets=targets).test_client()
    prune(client, "alpha")
    fake_host.probe_answers["df -B1 --output=size,avail /var/lib/docker"] = Execution(
        0, FAKE_DF.replace("40000000000", "3000000000"), "", 0.01
    )
    prune(client, "bravo")  # 3% free stays 3%: the fake host's df does not move

    page = client.get("/status", headers={"Accept": BROWSER}).get_data(as_text=True)

    assert "disk free · cache" in page
    assert "40% · 8GB" in page  # alpha: 40 GB of 100 GB free, 8 GB of cache
    assert '<b class="bad">3%</b> · 8GB <span class="tag" title="the last run left' in page
    assert page.count(">missed</span>") == 1
    assert "not measured" in page  # charlie never ran


def test_a_fleet_host_that_missed_its_goal_is_a_state_of_its_own_worst_first(make_app, fake_host):
    """The disk still short after stage 2 is no green "ok": its own state, card and rank,
    below failures and above hosts never pruned or healthy."""
    from tests.conftest import FAKE_DF
    from tests.test_status_page import DOCKER_DOWN, prune, rows, state_of

    policy = PrunePolicy(min_free=FreeGoal(percent=10))
    targets = tuple(
        Target(name, SSHEndpoint(f"{name}.example", key="k"), policy)
        for name in ("alpha", "bravo", "charlie", "delta")
    )
    client = make_app(targets_file="targets.toml", file_targets=targets).test_client()
    prune(client, "alpha")
    fake_host.probe_answers["df -B1 --output=size,avail /var/lib/docker"] = Execution(
        0, FAKE_DF.replace("40000000000", "3000000000"), "", 0.01
    )
    prune(client, "bravo")  # 3% free after stage 2: min_free 10% missed
    fake_host.execution = DOCKER_DOWN
    prune(client, "delta")

    page = client.get("/status", headers={"Accept": BROWSER}).get_data(as_text=True)

    assert rows(page) == ["delta", "bravo", "charlie", "alpha"]
    states = {name: state_of(page, name) for name in rows(page)}
    assert states == {
        "delta": "failed",
        "bravo": "goal missed",
        "charlie": "never pruned",
        "alpha": "ok",
    }
    assert '<span>goal missed</span><b class="bad">1</b>' in page
    assert '<span>ok</span><b class="ok">1</b>' in page
    assert "7GB short of min_free" in page  # 10 GB wanted, 3 GB free
    listed = [t["name"] for t in client.get("/status").get_json()["targets"]]
    assert listed == rows(page)


def test_a_run_during_which_the_disk_grew_says_so_in_human_sizes(disk_app):
    """Other writes outpaced the prune: df measures a negative `freed_bytes`."""
    app, host = disk_app(max_cache=None, min_free=None)
    host.old = 0
    host.others_freed_by_stage_1 = -462_800  # 462.8 kB written during the run
    client = app.test_client()
    assert prune(client)["freed_bytes"] == -462_800

    page = client.get("/status", headers={"Accept": BROWSER}).get_data(as_text=True)

    assert "e+0" not in page and "freed -" not in page
    assert "grew 462.8kB" in page  # the chart's label
    assert "the disk grew 462.8kB during the run" in page  # the card, the table, the title
