"""GET /metrics: Prometheus text, right in one process and summed across gunicorn workers."""

from __future__ import annotations

import sqlite3

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import AUTH, START
from tests.harness import in_a_fresh_app

# the labels of the one target the test apps configure (named after 127.0.0.1)
ONE = (("target", "127.0.0.1"),)


def scrape(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metrics_of(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    return scrape(response.get_data(as_text=True))


def test_metrics_count_decisions_prunes_and_reclaimed_bytes(client, clock):
    client.post("/hooks/cron?wait=1", headers=AUTH)
    clock.advance(10)
    client.post("/hooks/watchdog", json={"host": "b", "used_percent": 91}, headers=AUTH)

    seen = metrics_of(client)

    decision = "prunehook_trigger_decisions_total"
    assert seen[(decision, (("decision", "started"), ("source", "cron"), ONE[0]))] == 1
    assert seen[(decision, (("decision", "skipped"), ("source", "watchdog"), ONE[0]))] == 1
    assert seen[("prunehook_prunes_total", (("outcome", "ok"), ("target", "127.0.0.1")))] == 1
    assert seen[("prunehook_reclaimed_bytes_total", ONE)] == 1_500_000_000
    assert seen[("prunehook_prune_duration_seconds_count", ONE)] == 1
    assert seen[("prunehook_last_success_timestamp_seconds", ONE)] == START
    assert seen[("prunehook_next_eligible_timestamp_seconds", ONE)] == START + 21600
    assert seen[("prunehook_in_flight", ONE)] == 0


def test_in_flight_gauge_shows_a_running_prune(client, fake_host):
    fake_host.hold()
    client.post("/hooks/cron", headers=AUTH)
    assert metrics_of(client)[("prunehook_in_flight", ONE)] == 1
    fake_host.release.set()


def test_failed_prunes_are_counted_by_error_kind(client, fake_host):
    from webhook.core.outcome import Execution

    fake_host.execution = Execution(None, "", "", 1.0, "auth_failed", "refused")
    client.post("/hooks/cron?wait=1", headers=AUTH)
    assert (
        metrics_of(client)[
            ("prunehook_prunes_total", (("outcome", "auth_failed"), ("target", "127.0.0.1")))
        ]
        == 1
    )


def test_metrics_add_up_across_gunicorn_workers(serve, tmp_path):
    served = serve({"PRUNEHOOK_DB_PATH": str(tmp_path / "state.sqlite3")}, workers=3)
    token = (tmp_path / "instance" / "hook-token").read_text().strip()
    for _ in range(60):
        assert served.call("/hooks/cron", token=token)[1]["decision"] == "no_target"

    for _ in range(6):  # whichever worker answers the scrape
        text = served.raw("/metrics")
        seen = scrape(text)
        no_target = (("decision", "no_target"), ("source", "cron"), ("target", ""))
        key = ("prunehook_trigger_decisions_total", no_target)
        assert seen[key] == 60


def test_a_scrape_reads_the_state_row_never_the_run_history(app, client, tmp_path):
    client.post("/hooks/cron?wait=1", headers=AUTH)
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:  # the history becomes unreadable
        db.execute("DROP TABLE runs")

    seen = metrics_of(client)

    assert seen[("prunehook_last_success_timestamp_seconds", ONE)] == START
    assert seen[("prunehook_enabled", ONE)] == 1


def test_prometheus_client_is_imported_at_the_first_scrape_not_at_start(tmp_path):
    """Cold start counts: the app starts without it; /metrics (or a first count) loads it."""
    then = (
        "loaded = 'prometheus_client' in sys.modules; "
        "answer = app.test_client().get('/metrics'); "
        "print(loaded, 'prometheus_client' in sys.modules, answer.status_code)"
    )
    assert in_a_fresh_app(tmp_path, then) == "False True 200"


def test_a_counts_file_a_worker_made_but_never_sized_leaves_the_scrape_whole(
    client, tmp_path, monkeypatch
):
    """prometheus_client makes a worker's file, then sizes it: a worker killed in between
    leaves it empty for good (prometheus/client_python#1199)."""
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_4242.db").touch()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))

    seen = metrics_of(client)

    assert seen[("prunehook_enabled", ONE)] == 1
