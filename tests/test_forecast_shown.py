"""What an operator sees of the watch and its forecast: /status, the page, /metrics and
`flask check` (DESIGN.md, "Watching and forecasting")."""

from __future__ import annotations

import re

import pytest

from tests.conftest import AUTH, FAKE_DF
from tests.test_metrics import metrics_of
from tests.test_status_page import BROWSER, fleet_app, in_chromium
from webhook.core.disk import FreeGoal, Goals
from webhook.core.forecast import Sample, SampleKind, forecast
from webhook.web.schemas import OneTargetStatusSchema

HOUR = 3600
GB = 1000**3
SIZE = 100 * GB
# a sample every 10 minutes for two hours, free space falling 4 GB an hour to 32 GB now:
# under a 20 GB min_free in 3 h, full in 8 h
RATE = 4 * GB / HOUR
FULL_AT = "prunehook_disk_full_at_timestamp_seconds"
FILL_RATE = "prunehook_disk_fill_rate_bytes_per_second"


def filling(app, clock, name: str | None = None, hours: int = 2) -> None:
    """Keep a steadily filling disk's samples for the target `name` (the only one)."""
    service = app.extensions["prunehook"].service
    target = service.fleet.get(name) if name else next(iter(service.fleet))
    start = clock() - hours * HOUR
    samples = [
        Sample(
            ts=start + step * 600,
            kind=SampleKind.WATCH,
            disk_size=SIZE,
            disk_free=int(32 * GB + RATE * (hours * HOUR - step * 600)),
            cache=8 * GB,
        )
        for step in range(hours * 6 + 1)
    ]
    # as a cron ping does: the claim makes the target's row, the measure keeps its samples
    assert service.store.claim_measures({target.name: 600}, clock(), 60) == [target.name]
    service.watch.observe(target, samples, act=False)


@pytest.fixture
def watched(make_app):
    return make_app(watch_interval_s=600, min_free=FreeGoal(size=20 * GB))


def test_status_shows_the_forecast_of_a_filling_disk(watched, clock):
    filling(watched, clock)
    client = watched.test_client()

    shown = client.get("/status/127.0.0.1").get_json()

    forecast = shown["forecast"]
    assert forecast["fill_rate_bytes_per_s"] == pytest.approx(RATE)
    assert forecast["min_free_at"] == pytest.approx(clock() + 3 * HOUR)
    assert forecast["full_at"] == pytest.approx(clock() + 8 * HOUR)
    assert (forecast["samples"], forecast["window_s"], forecast["why_none"]) == (13, 21600, None)
    assert OneTargetStatusSchema().validate(shown) == {}
    fleet = client.get("/status").get_json()
    assert fleet["forecast"] == fleet["targets"][0]["forecast"] == forecast


def test_status_says_why_there_is_no_forecast_and_null_before_any_measure(watched, clock):
    client = watched.test_client()
    assert client.get("/status/127.0.0.1").get_json()["forecast"] is None

    filling(watched, clock, hours=0)

    forecast = client.get("/status/127.0.0.1").get_json()["forecast"]
    assert forecast["full_at"] is None and forecast["fill_rate_bytes_per_s"] is None
    assert forecast["why_none"] == "1 samples since the last prune in the window; 3 needed"


def test_the_page_says_when_the_disk_fills_and_draws_free_space(watched, clock):
    filling(watched, clock)

    page = watched.test_client().get("/status", headers={"Accept": BROWSER}).get_data(as_text=True)

    assert "<b>full in ~8 h</b>" in page
    assert "under min_free in ~3 h, full in ~8 h (filling 4GB/h)" in page
    label = r'aria-label="free space over the last 6 h: 13 samples, from 40GB to 32GB of 100GB"'
    chart = re.search(rf"<svg [^>]*{label}>.*?</svg>", page, re.S)
    assert chart, page
    points = re.search(r'<polyline points="([^"]+)" class="free-line"/>', chart[0])[1].split()
    # 13 samples over the last 2 of 6 hours: from 1/3 of the width to the right edge,
    # falling from 40% free to 32% of the 100 px
    assert (len(points), points[0], points[-1]) == (13, "400.0,60.0", "600.0,68.0")
    assert 'y1="80.0"' in chart[0]  # min_free: 20% of the disk


def test_the_chart_renders_in_chromium_with_nothing_blocked(watched, clock, tmp_path, chromium):
    filling(watched, clock)

    browser = in_chromium(chromium, watched, "/status", tmp_path)

    assert "Content Security Policy" not in browser.stderr
    assert 'class="free-line"' in browser.stdout and "full in ~8 h" in browser.stdout


def test_an_unwatched_target_without_samples_says_how_to_watch_it(make_app):
    page = make_app().test_client().get("/status", headers={"Accept": BROWSER})

    text = page.get_data(as_text=True)
    assert "<b>not measured</b>" in text
    assert "No measure in the window yet: set watch_interval_s" in text
    assert "free-line" not in text.split("</style>")[1]


def test_the_fleet_page_shows_each_forecast_and_reads_no_samples(make_app, clock, monkeypatch):
    app = fleet_app(make_app, ["build-1", "build-2"])
    filling(app, clock, "build-1")
    store = app.extensions["prunehook"].service.store
    monkeypatch.setattr(store, "samples", lambda *args: pytest.fail("a fleet page read samples"))

    page = app.test_client().get("/status", headers={"Accept": BROWSER}).get_data(as_text=True)

    assert '<td title="full in ~8 h (filling 4GB/h)">full in ~8 h</td>' in page
    assert page.count('<td class="muted">—</td>') == 1  # build-2: never measured


def gauges(client, name: str) -> dict[str, float]:
    """One per-target gauge of /metrics, by target."""
    return {
        dict(labels)["target"]: value
        for (metric, labels), value in metrics_of(client).items()
        if metric == name
    }


def test_metrics_give_when_the_disk_fills_and_how_fast(watched, clock):
    filling(watched, clock)

    client = watched.test_client()

    assert gauges(client, FULL_AT) == {"127.0.0.1": pytest.approx(clock() + 8 * HOUR)}
    assert gauges(client, FILL_RATE) == {"127.0.0.1": pytest.approx(RATE)}


def test_a_disk_not_filling_has_a_rate_and_no_full_at_and_an_unmeasured_one_neither(
    make_app, clock
):
    app = fleet_app(make_app, ["emptying", "unmeasured"])
    store, now = app.extensions["prunehook"].service.store, clock()
    rising = [
        Sample(ts=now - step * 900, kind=SampleKind.WATCH, disk_size=SIZE,
               disk_free=int(32 * GB - step * GB // 2))
        for step in range(4)
    ]  # fmt: skip
    store.claim_measures({"emptying": 600}, now, 60)
    store.add_samples(
        "emptying", rising[::-1], now - 21600, lambda kept: forecast(kept, now, 21600, Goals())
    )
    client = app.test_client()

    assert gauges(client, FULL_AT) == {}
    assert gauges(client, FILL_RATE) == {"emptying": pytest.approx(-GB / 2 / 900)}


def test_each_measure_of_the_watch_is_counted_by_result_and_a_runs_are_not(
    watched, fake_host, clock
):
    client = watched.test_client()
    hook = watched.extensions["prunehook"]
    assert client.post("/hooks/cron?wait=1", headers=AUTH).get_json()["decision"] == "started"
    for df in (FAKE_DF, FAKE_DF, "df: /var/lib/docker: No such file or directory\n"):
        clock.advance(600)
        fake_host.df = df
        assert client.post("/hooks/cron", headers=AUTH).get_json()["decision"] == "skipped"
        hook.join_all(10)

    counted = {
        tuple(sorted(dict(labels).items())): value
        for (metric, labels), value in metrics_of(client).items()
        if metric == "prunehook_measurements_total"
    }
    assert counted == {
        (("result", "ok"), ("target", "127.0.0.1")): 2,
        (("result", "failed"), ("target", "127.0.0.1")): 1,
    }


def test_check_shows_each_watched_targets_forecast(watched, clock):
    filling(watched, clock)

    result = watched.test_cli_runner().invoke(args=["check"])

    assert (
        "PASS  forecast     127.0.0.1: under min_free in ~3 h, full in ~8 h (filling 4GB/h);"
        " measured every 600 s\n"
    ) in result.output


def test_check_says_a_watched_target_is_not_measured_yet_and_leaves_others_out(make_app):
    watched = make_app(watch_interval_s=600).test_cli_runner().invoke(args=["check"])
    unwatched = make_app().test_cli_runner().invoke(args=["check"])

    assert "PASS  forecast     127.0.0.1: not measured yet; measured every 600 s" in watched.output
    assert "forecast" not in unwatched.output
