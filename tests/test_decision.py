"""The anti-frequency decision: a pure function of state, time and policy."""

from __future__ import annotations

from dataclasses import replace

from webhook.core.decision import (
    Answer,
    Result,
    TargetState,
    clock_step,
    decide,
    interval_start,
    next_eligible_ts,
)
from webhook.core.targets import PrunePolicy

POLICY = PrunePolicy(interval_s=21600, retry_after_s=600)
T0 = 1_000_000.0


def ran(result: Result, started: float = T0, finished: float | None = None) -> TargetState:
    return TargetState(
        last_started_ts=started, last_finished_ts=finished or started + 30, last_result=result
    )


def test_first_trigger_ever_starts_a_prune():
    assert decide(TargetState(), T0, POLICY).answer == Answer.STARTED


def test_second_alert_within_interval_is_skipped():
    decision = decide(ran(Result.OK), T0 + 10, POLICY)
    assert decision.answer == Answer.SKIPPED
    assert decision.next_eligible_ts == T0 + 21600


def test_trigger_after_interval_starts_a_prune():
    assert decide(ran(Result.OK), T0 + 21600, POLICY).answer == Answer.STARTED
    assert decide(ran(Result.OK), T0 + 21599, POLICY).answer == Answer.SKIPPED


def test_failed_run_is_retried_after_the_retry_delay_not_the_interval():
    state = ran(Result.FAILED, finished=T0 + 5)
    assert decide(state, T0 + 5 + 599, POLICY).answer == Answer.SKIPPED
    assert decide(state, T0 + 5 + 600, POLICY).answer == Answer.STARTED
    assert next_eligible_ts(state, POLICY) == T0 + 605


def test_live_lease_means_busy_even_when_forced():
    state = TargetState(inflight_run_id=7, lease_expires_ts=T0 + 180, last_started_ts=T0)
    decision = decide(state, T0 + 1, POLICY, force=True)
    assert decision.answer == Answer.BUSY
    assert decision.next_eligible_ts == T0 + 180


def test_expired_lease_lets_the_target_be_claimed_and_gives_up_the_dead_run():
    state = TargetState(inflight_run_id=7, lease_expires_ts=T0 + 180, last_started_ts=T0)
    decision = decide(state, T0 + 180, POLICY)
    assert decision.answer == Answer.STARTED
    assert decision.lost_run_id == 7


def test_force_overrides_the_interval_only():
    assert decide(ran(Result.OK), T0 + 1, POLICY, force=True).answer == Answer.STARTED


def test_stored_times_up_to_a_minute_ahead_are_ordinary_skew_not_a_clock_step():
    state = TargetState(
        last_started_ts=T0 + 60, last_finished_ts=T0 + 60, last_result=Result.OK,
        last_success_ts=T0 + 60,
    )  # fmt: skip
    assert clock_step(state, T0, lease_s=180) is None


def test_a_start_stored_ahead_after_a_step_back_makes_the_next_prune_due_an_interval_from_now():
    step = clock_step(ran(Result.OK, started=T0 + 7200), T0, lease_s=180)
    assert step is not None and step.ahead_s == 7230
    assert step.state.last_started_ts == step.state.last_finished_ts == T0
    assert next_eligible_ts(step.state, POLICY) == T0 + 21600


def test_a_failed_run_stored_ahead_is_retried_a_retry_delay_from_now():
    step = clock_step(ran(Result.FAILED, started=T0 + 7200), T0, lease_s=180)
    assert step is not None
    assert decide(step.state, T0 + 599, POLICY).answer == Answer.SKIPPED
    assert decide(step.state, T0 + 600, POLICY).answer == Answer.STARTED


def test_a_lease_stored_ahead_is_capped_at_now_plus_the_lease():
    held = TargetState(
        last_started_ts=T0 + 7200, inflight_run_id=7, inflight_started_ts=T0 + 7200,
        lease_expires_ts=T0 + 7380,
    )  # fmt: skip
    step = clock_step(held, T0, lease_s=180)
    assert step is not None
    assert step.state.lease_expires_ts == T0 + 180
    assert decide(step.state, T0 + 179, POLICY).answer == Answer.BUSY
    assert decide(step.state, T0 + 180, POLICY).lost_run_id == 7


def test_a_live_lease_alone_is_not_a_clock_step():
    held = TargetState(
        last_started_ts=T0, inflight_run_id=7, inflight_started_ts=T0, lease_expires_ts=T0 + 180
    )
    assert clock_step(held, T0, lease_s=180) is None


def test_a_lease_longer_than_todays_after_the_timeout_was_lowered_is_not_a_clock_step():
    held = TargetState(
        last_started_ts=T0, inflight_run_id=7, inflight_started_ts=T0, lease_expires_ts=T0 + 900
    )
    assert clock_step(held, T0 + 10, lease_s=180) is None


CRITICAL = PrunePolicy(interval_s=21600, retry_after_s=600, critical_interval_s=900)


def test_a_critical_trigger_starts_inside_the_interval_once_past_the_critical_interval():
    decision = decide(ran(Result.OK), T0 + 900, CRITICAL, critical=True)
    assert decision.answer == Answer.STARTED
    assert decision.reason.startswith("critical")
    assert decide(ran(Result.OK), T0 + 900, CRITICAL).answer == Answer.SKIPPED


def test_a_critical_trigger_within_the_critical_interval_is_skipped_until_it_ends():
    decision = decide(ran(Result.OK), T0 + 899, CRITICAL, critical=True)
    assert decision.answer == Answer.SKIPPED
    assert decision.next_eligible_ts == T0 + 900
    assert "critical_interval_s" in decision.reason


def test_the_critical_interval_counts_from_the_last_start_whatever_its_result():
    slow_retry = PrunePolicy(interval_s=21600, retry_after_s=3600, critical_interval_s=900)
    for result in (Result.FAILED, Result.LOST):
        state = ran(result, finished=T0 + 100)
        assert decide(state, T0 + 899, slow_retry, critical=True).answer == Answer.SKIPPED
        assert decide(state, T0 + 900, slow_retry, critical=True).answer == Answer.STARTED


def test_critical_never_overrides_a_run_in_flight_and_never_delays_a_due_prune():
    in_flight = TargetState(inflight_run_id=3, lease_expires_ts=T0 + 180, last_started_ts=T0)
    assert decide(in_flight, T0 + 1, CRITICAL, critical=True).answer == Answer.BUSY
    short = PrunePolicy(interval_s=600, critical_interval_s=900)
    assert decide(ran(Result.OK), T0 + 600, short, critical=True).answer == Answer.STARTED
    assert decide(TargetState(), T0, CRITICAL, critical=True).answer == Answer.STARTED


def test_the_interval_counts_from_its_anchor_and_in_an_older_row_from_the_last_start():
    anchored = contradicted(replace(ran(Result.OK), last_run_id=1), T0 + 900)
    assert next_eligible_ts(anchored, CRITICAL) == T0 + 21600
    older = replace(ran(Result.OK, started=T0 + 900), last_run_id=2)  # before the column
    assert older.interval_started_ts is None
    assert next_eligible_ts(older, CRITICAL) == T0 + 900 + 21600


def contradicted(state: TargetState, at: float) -> TargetState:
    """`state` after a critical start at `at` that its own measure found not critical (it
    pruned nothing): the start is kept, the interval's anchor is not moved (tests/test_store
    holds the store to this)."""
    run_id = (state.last_run_id or 0) + 1
    return replace(
        state,
        last_run_id=run_id,
        last_started_ts=at,
        last_finished_ts=at + 5,
        last_result=Result.OK,
        interval_started_ts=interval_start(state),
        uncounted_run_id=run_id,
    )


def test_a_critical_start_its_own_measure_contradicted_leaves_the_interval_where_it_was():
    state = contradicted(ran(Result.OK), T0 + 900)
    assert next_eligible_ts(state, CRITICAL) == T0 + 21600
    skipped = decide(state, T0 + 21599, CRITICAL)
    assert (skipped.answer, skipped.next_eligible_ts) == (Answer.SKIPPED, T0 + 21600)
    assert decide(state, T0 + 21600, CRITICAL).reason == "due"


def test_stale_critical_alerts_every_critical_interval_never_push_the_due_prune_away():
    state = ran(Result.OK)
    at = T0 + 900
    while at < T0 + 21600:
        decision = decide(state, at, CRITICAL, critical=True)
        assert (decision.answer, decision.critical) == (Answer.STARTED, True)
        state = contradicted(state, at)
        cron = decide(state, at + 1, CRITICAL)
        assert (cron.answer, cron.next_eligible_ts) == (Answer.SKIPPED, T0 + 21600)
        at += 900
    due = decide(state, T0 + 21600, CRITICAL)
    assert (due.answer, due.reason, due.critical) == (Answer.STARTED, "due", False)


def test_a_start_by_an_earlier_release_sharing_the_database_counts_from_its_start():
    state = contradicted(replace(ran(Result.OK), last_run_id=1), T0 + 900)
    assert next_eligible_ts(state, CRITICAL) == T0 + 21600
    # its claim moves the last start and the last run, and writes no anchor
    earlier_release = replace(state, last_run_id=3, last_started_ts=T0 + 1800)
    assert next_eligible_ts(earlier_release, CRITICAL) == T0 + 1800 + 21600


def test_a_contradicted_critical_start_still_holds_the_next_critical_one_off():
    state = contradicted(ran(Result.OK), T0 + 900)
    skipped = decide(state, T0 + 1799, CRITICAL, critical=True)
    assert (skipped.answer, skipped.next_eligible_ts) == (Answer.SKIPPED, T0 + 1800)
    assert decide(state, T0 + 1800, CRITICAL, critical=True).critical


def test_an_interval_anchor_stored_ahead_after_a_step_back_is_capped_with_the_start():
    ahead = replace(ran(Result.OK, started=T0 + 7200), interval_started_ts=T0 + 7200)
    step = clock_step(ahead, T0, lease_s=180)
    assert step is not None and step.state.interval_started_ts == T0
    assert next_eligible_ts(step.state, POLICY) == T0 + 21600
