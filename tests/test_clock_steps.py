"""The clock stepped back (NTP correction, a restored VM): stored times in the future must not
suspend pruning, nor keep the timestamp gauges in the future (a staleness alert needs them)."""

from __future__ import annotations

import logging

from tests.conftest import AUTH
from tests.test_metrics import metrics_of

STEP_BACK_S = 2 * 3600
INTERVAL_S = 21600

# the labels of the one target the test apps configure (named after 127.0.0.1)
ONE = (("target", "127.0.0.1"),)


def test_after_a_step_back_the_next_prune_is_due_one_interval_from_now(client, clock, caplog):
    assert client.post("/hooks/cron?wait=1", headers=AUTH).get_json()["decision"] == "started"
    clock.advance(-STEP_BACK_S)

    with caplog.at_level(logging.WARNING):
        skipped = client.post("/hooks/cron", headers=AUTH).get_json()
    assert skipped["decision"] == "skipped"
    assert skipped["next_eligible_ts"] == clock.now + INTERVAL_S
    assert any(getattr(r, "fields", {}).get("event") == "clock_step" for r in caplog.records)

    clock.advance(INTERVAL_S)
    assert client.post("/hooks/cron?wait=1", headers=AUTH).get_json()["decision"] == "started"


def test_a_lease_stored_in_the_future_ends_one_lease_from_now(app, client, clock, fake_host):
    lease_s = app.extensions["prunehook"].settings.targets.base_policy.lease_s
    fake_host.hold()  # the run stays in flight, as if its worker hung
    assert client.post("/hooks/cron", headers=AUTH).get_json()["decision"] == "started"
    fake_host.wait_until_held(1)
    clock.advance(-STEP_BACK_S)

    busy = client.post("/hooks/cron", headers=AUTH).get_json()
    assert (busy["decision"], busy["next_eligible_ts"]) == ("busy", clock.now + lease_s)

    clock.advance(lease_s)
    taken = client.post("/hooks/cron", headers=AUTH).get_json()
    assert taken["decision"] == "started"
    assert "given up as lost" in taken["reason"]


def test_timestamp_gauges_never_report_the_future_after_a_step_back(client, clock):
    client.post("/hooks/cron?wait=1", headers=AUTH)
    clock.advance(-STEP_BACK_S)

    seen = metrics_of(client)
    assert seen[("prunehook_last_success_timestamp_seconds", ONE)] <= clock.now
    assert seen[("prunehook_last_run_timestamp_seconds", ONE)] <= clock.now

    client.post("/hooks/cron", headers=AUTH)  # the step is noticed and the times capped
    stepped_at = clock.now
    clock.advance(600)
    seen = metrics_of(client)
    # the age a staleness alert computes grows again from the step
    assert seen[("prunehook_last_success_timestamp_seconds", ONE)] == stepped_at
    assert seen[("prunehook_next_eligible_timestamp_seconds", ONE)] == stepped_at + INTERVAL_S
