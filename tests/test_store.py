"""The store's contract: what every backend must do, run against each (`make_store`).

A backend stores and never decides: a claim is a compare-and-set against the state the
service read, a finish belongs to the run that owns the target, history is bounded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

from tests.harness import failed_outcome, succeeded_outcome
from webhook.core.decision import Result, TargetState, next_eligible_ts
from webhook.core.disk import FreeGoal, Goals, Measure
from webhook.core.forecast import Forecast, Sample, SampleKind
from webhook.core.outcome import ErrorKind, RunOutcome, Step, report
from webhook.core.targets import PrunePolicy
from webhook.store import NewRun, Store
from webhook.store.records import (
    HISTORY_LIMIT,
    OUTCOME_COLUMNS,
    SAMPLES_KEPT,
    SAMPLES_KEPT_S,
    SampleRecord,
)

TARGET = "build-1"
T0 = 1_000_000.0
LEASE = 180.0
RUN = NewRun("cron", "docker builder prune -f --filter until=24h", 4242, "req-1")
MakeStore = Callable[[], Store]


def outcome(ok: bool = True, reclaimed: str = "2GB", size: int = 2_000_000_000) -> RunOutcome:
    return succeeded_outcome(size, reclaimed=reclaimed) if ok else failed_outcome()


def claim_now(store: Store, now: float, target: str = TARGET) -> int | None:
    """Claim against the state as it is now (what the service does when a run is due)."""
    return store.claim(target, store.read_state(target), RUN, now, LEASE)


def test_a_new_target_has_an_empty_state_and_no_record(make_store: MakeStore):
    store = make_store()
    assert store.read_state(TARGET) == TargetState()
    assert store.target_record(TARGET) is None
    assert store.recent_runs(TARGET) == []


def test_a_claim_records_the_run_in_flight_with_its_lease(make_store: MakeStore):
    store = make_store()
    run_id = claim_now(store, T0)
    assert run_id is not None
    record = store.target_record(TARGET)
    assert record is not None
    assert (record.inflight_run_id, record.lease_expires_ts) == (run_id, T0 + LEASE)
    assert (record.last_run_id, record.last_started_ts) == (run_id, T0)
    run = store.run(run_id)
    assert run is not None
    assert (run.result, run.trigger, run.worker_pid, run.request_id) == (
        Result.RUNNING, "cron", 4242, "req-1",
    )  # fmt: skip


def test_a_claim_against_a_state_that_changed_records_nothing(make_store: MakeStore):
    store = make_store()
    stale = store.read_state(TARGET)
    assert store.claim(TARGET, stale, RUN, T0, LEASE) is not None
    assert store.claim(TARGET, stale, RUN, T0 + 1, LEASE) is None
    assert len(store.recent_runs(TARGET)) == 1


def contend(stores: list[Store], now: float) -> list[int]:
    """The runs that workers of their own (`stores`) claim at once against one state."""
    barrier = threading.Barrier(len(stores))
    won: list[int | None] = []

    def claim(store: Store) -> None:
        expected = store.read_state(TARGET)
        barrier.wait(30)
        won.append(store.claim(TARGET, expected, RUN, now, LEASE))

    threads = [threading.Thread(target=claim, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    return [run for run in won if run is not None]


def test_concurrent_claims_on_one_state_record_exactly_one_run(make_store: MakeStore):
    make_store().ensure_schema()
    assert len(contend([make_store() for _ in range(16)], T0)) == 1
    assert len(make_store().recent_runs(TARGET)) == 1


def test_concurrent_claims_of_a_target_with_a_row_record_exactly_one_run(make_store: MakeStore):
    """The row exists: only the claim's lock (or its transaction) serializes them."""
    store = make_store()
    workers = [make_store() for _ in range(16)]
    for start in (T0, T0 + 1000, T0 + 2000):
        (won,) = contend(workers, start)
        assert store.finish(TARGET, won, outcome(), start + 5)
    assert len(store.recent_runs(TARGET)) == 3


def test_a_finish_records_the_outcome_and_clears_the_run_in_flight(make_store: MakeStore):
    store = make_store()
    run_id = claim_now(store, T0)
    assert run_id is not None
    assert store.finish(TARGET, run_id, outcome(), T0 + 5) is True
    record = store.target_record(TARGET)
    assert record is not None
    assert (record.last_result, record.last_reclaimed, record.last_reclaimed_bytes) == (
        Result.OK, "2GB", 2_000_000_000,
    )  # fmt: skip
    assert (record.inflight_run_id, record.last_success_ts) == (None, T0 + 5)
    run = store.run(run_id)
    assert run is not None
    assert (run.result, run.finished_ts, run.reclaimed_bytes) == (Result.OK, T0 + 5, 2 * 10**9)


def test_a_failure_keeps_the_last_success_and_says_what_failed(make_store: MakeStore):
    store = make_store()
    first = claim_now(store, T0)
    assert first is not None
    store.finish(TARGET, first, outcome(), T0 + 5)
    second = claim_now(store, T0 + 10)
    assert second is not None
    store.finish(TARGET, second, outcome(ok=False), T0 + 15)
    record = store.target_record(TARGET)
    assert record is not None
    assert (record.last_result, record.last_error_kind, record.last_success_ts) == (
        Result.FAILED, ErrorKind.EXIT_STATUS, T0 + 5,
    )  # fmt: skip


def test_state_survives_a_new_connection(make_store: MakeStore):
    run_id = claim_now(make_store(), T0)
    assert run_id is not None
    make_store().finish(TARGET, run_id, outcome(), T0 + 5)
    state = make_store().read_state(TARGET)
    assert (state.last_result, state.last_started_ts, state.inflight_run_id) == (
        Result.OK, T0, None,
    )  # fmt: skip


def test_claiming_over_an_expired_lease_gives_up_the_dead_run_as_lost(make_store: MakeStore):
    store = make_store()
    dead = claim_now(store, T0)
    assert dead is not None
    newer = claim_now(store, T0 + LEASE)
    assert newer is not None
    run = store.run(dead)
    assert run is not None
    assert (run.result, run.error_kind) == (Result.LOST, ErrorKind.LOST)


def test_a_dead_runs_late_finish_never_overwrites_a_newer_run(make_store: MakeStore):
    store = make_store()
    dead = claim_now(store, T0)
    newer = claim_now(store, T0 + LEASE)
    assert dead is not None and newer is not None
    store.finish(TARGET, newer, outcome(reclaimed="5GB", size=5_000_000_000), T0 + 200)
    assert store.finish(TARGET, dead, outcome(reclaimed="1GB", size=1), T0 + 300) is False
    record = store.target_record(TARGET)
    assert record is not None
    assert (record.last_run_id, record.last_reclaimed, record.inflight_run_id) == (
        newer, "5GB", None,
    )  # fmt: skip


def test_a_lease_is_renewed_only_by_the_run_that_owns_the_target(make_store: MakeStore):
    store = make_store()
    run_id = claim_now(store, T0)
    assert run_id is not None
    assert store.renew_lease(TARGET, run_id, T0 + 999) is True
    assert store.read_state(TARGET).lease_expires_ts == T0 + 999
    assert store.renew_lease(TARGET, run_id + 1, T0 + 5000) is False
    store.finish(TARGET, run_id, outcome(), T0 + 5)
    assert store.renew_lease(TARGET, run_id, T0 + 5000) is False


def test_times_are_corrected_only_against_the_state_that_was_read(make_store: MakeStore):
    store = make_store()
    run_id = claim_now(store, T0 + 7200)  # written by a clock two hours ahead
    assert run_id is not None
    store.finish(TARGET, run_id, outcome(), T0 + 7205)
    seen = store.read_state(TARGET)
    capped = TargetState(
        last_run_id=seen.last_run_id, last_started_ts=T0, last_finished_ts=T0,
        last_result=seen.last_result, last_success_ts=T0,
    )  # fmt: skip
    assert store.correct_times(TARGET, seen, capped) is True
    assert store.read_state(TARGET) == capped
    assert store.correct_times(TARGET, seen, capped) is False  # seen is stale now


def test_history_is_bounded_per_target(make_store: MakeStore):
    store = make_store()
    for index in range(HISTORY_LIMIT + 20):
        run_id = claim_now(store, T0 + index)
        assert run_id is not None
        store.finish(TARGET, run_id, outcome(), T0 + index)
    other = claim_now(store, T0, target="build-2")
    runs = store.recent_runs(TARGET, limit=1000)
    assert len(runs) == HISTORY_LIMIT
    assert runs[0].id == max(run.id for run in runs)
    assert [run.id for run in store.recent_runs("build-2")] == [other]


def test_every_targets_record_is_read_at_once(make_store: MakeStore):
    store = make_store()
    for name in ("build-1", "build-2", "build-3"):
        claim_now(store, T0, target=name)
    records = store.target_records()
    assert sorted(records) == ["build-1", "build-2", "build-3"]
    assert all(record.inflight_run_id is not None for record in records.values())


def test_a_claim_on_one_target_leaves_the_others_alone(make_store: MakeStore):
    store = make_store()
    claim_now(store, T0, target="build-1")
    assert store.read_state("build-2") == TargetState()
    assert claim_now(store, T0, target="build-2") is not None


def test_a_run_claimed_through_another_connection_is_seen_by_the_next_read(
    make_store: MakeStore,
):
    worker_a, worker_b = make_store(), make_store()  # two gunicorn workers (or replicas)
    run_id = claim_now(worker_a, T0)
    assert run_id is not None
    worker_a.finish(TARGET, run_id, outcome(), T0 + 5)
    assert worker_a.read_state(TARGET).inflight_run_id is None
    newer = claim_now(worker_b, T0 + 20)
    assert worker_a.read_state(TARGET).inflight_run_id == newer


def test_a_delivery_id_is_a_replay_once_settled(make_store: MakeStore):
    store = make_store()
    assert store.remember_delivery("msg_1", T0, keep_s=86400, pending_s=90)
    store.settle_delivery("msg_1")
    assert not store.remember_delivery("msg_1", T0 + 3600, keep_s=86400, pending_s=90)
    assert store.remember_delivery("msg_1", T0 + 86401, keep_s=86400, pending_s=90)


def test_a_pending_delivery_id_is_taken_until_it_settles_or_its_time_runs_out(
    make_store: MakeStore,
):
    store = make_store()
    assert store.remember_delivery("msg_1", T0, keep_s=86400, pending_s=90)
    assert not store.remember_delivery("msg_1", T0 + 10, keep_s=86400, pending_s=90)
    # never settled (a 5xx that could not be undone, a dead worker): free again later
    assert store.remember_delivery("msg_1", T0 + 91, keep_s=86400, pending_s=90)


def test_a_forgotten_delivery_id_is_free_at_once_but_a_settled_one_stays(
    make_store: MakeStore,
):
    store = make_store()
    store.remember_delivery("failed", T0, keep_s=86400, pending_s=90)
    store.forget_delivery("failed")
    assert store.remember_delivery("failed", T0 + 1, keep_s=86400, pending_s=90)
    store.remember_delivery("answered", T0, keep_s=86400, pending_s=90)
    store.settle_delivery("answered")
    store.forget_delivery("answered")
    assert not store.remember_delivery("answered", T0 + 1, keep_s=86400, pending_s=90)


def test_a_runs_output_is_kept_whatever_bytes_it_holds_but_nul(make_store: MakeStore):
    """PostgreSQL's text holds no NUL: every backend drops it, and keeps the rest as it was."""
    store = make_store()
    run_id = claim_now(store, T0)
    assert run_id is not None
    store.finish(TARGET, run_id, succeeded_outcome(stdout_tail="a\x00b é"), T0 + 5)
    run = store.run(run_id)
    assert run is not None and run.stdout_tail == "ab é"


def test_nul_in_any_text_column_is_dropped_alike_by_every_backend(make_store: MakeStore):
    """A cron `source`, a watchdog `host` or a receiver reaches `trigger`; a host's version
    and errors reach `docker_version`, `error` and `last_error`."""
    store = make_store()
    run_id = store.claim(TARGET, TargetState(), NewRun("cron:a\x00b", "cmd"), T0, LEASE)
    assert run_id is not None
    failed = replace(failed_outcome(error="rc=1: bad\x00 byte"), docker_version="28.2\x00.2")
    assert store.finish(TARGET, run_id, failed, T0 + 5)
    run, record = store.run(run_id), store.target_record(TARGET)
    assert run is not None and record is not None
    assert (run.trigger, run.error, run.docker_version) == ("cron:ab", "rc=1: bad byte", "28.2.2")
    assert record.last_error == "rc=1: bad byte"


MEASURED = succeeded_outcome(
    2_000_000_000,
    steps=(
        Step("disk before", "df -B1 --output=size,avail /var/lib/docker", 0, 0.01, "1 2\n"),
        Step(
            "stage 2",
            "docker builder prune -f --keep-storage 5000000000",
            0,
            3.5,
            "Total:\t2GB\n",
            "Flag --keep-storage has been deprecated\n",
        ),
        Step("cache after", "docker system df", None, 30.0, "", "", ErrorKind.TIMEOUT, "gone"),
    ),
    notes=("cache after: timeout: gone",),
    freed_bytes=1_999_000_000,
    disk_size=50_000_000_000,
    disk_free_before=1_000_000_000,
    disk_free_after=2_999_000_000,
    cache_before=9_000_000_000,
    cache_after=None,
    goal_met=False,
    free_short_bytes=4_501_000_000,
    cache_over_bytes=None,
    keep_storage_bytes=5_000_000_000,
    docker_version="28.2.2",
    buildx_version="0.24.0",
)


def test_a_run_keeps_what_it_measured_its_steps_and_their_output(make_store: MakeStore):
    store = make_store()
    run_id = claim_now(store, T0)
    assert run_id is not None
    store.finish(TARGET, run_id, MEASURED, T0 + 40)
    run = make_store().run(run_id)
    assert run is not None
    assert run.steps == MEASURED.steps
    assert run.notes == MEASURED.notes
    for name in OUTCOME_COLUMNS:
        assert getattr(run, name) == getattr(MEASURED, name), name
    assert run.goal_met is False
    assert make_store().recent_runs(TARGET)[0] == run


def test_a_target_keeps_its_last_measurement_and_goal(make_store: MakeStore):
    store = make_store()
    run_id = claim_now(store, T0)
    assert run_id is not None
    store.finish(TARGET, run_id, MEASURED, T0 + 40)
    record = store.target_record(TARGET)
    assert record is not None
    # free space after the stages; the cache after could not be read: the one before
    assert (record.last_disk_size, record.last_disk_free, record.last_cache) == (
        50_000_000_000, 2_999_000_000, 9_000_000_000,
    )  # fmt: skip
    assert (record.last_measured_ts, record.last_freed_bytes) == (T0 + 40, 1_999_000_000)
    assert record.last_goal_met is False  # a boolean, whatever the column's type
    assert record.last_free_short_bytes == 4_501_000_000
    assert store.target_records()[TARGET] == record


def test_a_run_that_measured_nothing_leaves_the_last_measurement_standing(
    make_store: MakeStore,
):
    store = make_store()
    first = claim_now(store, T0)
    assert first is not None
    store.finish(TARGET, first, MEASURED, T0 + 40)
    second = claim_now(store, T0 + 100)
    assert second is not None
    store.finish(TARGET, second, failed_outcome(ErrorKind.CONNECT_REFUSED), T0 + 101)
    record = store.target_record(TARGET)
    assert record is not None
    assert (record.last_disk_free, record.last_measured_ts) == (2_999_000_000, T0 + 40)
    # but how the last run stood is that run's: not known
    assert (record.last_goal_met, record.last_freed_bytes) == (None, None)
    run = store.run(second)
    assert run is not None
    assert (run.steps, run.notes, run.goal_met, run.freed_bytes) == ((), (), None, None)


def test_a_hosts_refusal_keeps_when_to_try_again_until_the_next_finish(make_store: MakeStore):
    from dataclasses import replace

    store = make_store()
    run_id = claim_now(store, T0)
    assert run_id is not None
    refused = replace(outcome(ok=False), error_kind=ErrorKind.HOST_INTERVAL, retry_after_s=3480.0)
    store.finish(TARGET, run_id, refused, T0 + 1)
    assert store.read_state(TARGET).retry_at_ts == T0 + 1 + 3480
    later = claim_now(store, T0 + 3481)
    assert later is not None
    store.finish(TARGET, later, outcome(), T0 + 3490)
    assert store.read_state(TARGET).retry_at_ts is None


# -- the start the interval counts from ----------------------------------------------------

# a critical start whose first measure found the disk 60 % used: it stopped, pruning nothing
NOT_CRITICAL = Measure(disk_size=100 * 10**9, disk_free=40 * 10**9)


def contradicted(goals: Goals) -> RunOutcome:
    """The report of such a start, judged by `goals`."""
    return report(
        [], failure=None, goals=goals, before=NOT_CRITICAL, after=NOT_CRITICAL, needed=False
    )


CONTRADICTED = contradicted(Goals())


def pruned_at_t0(make_store: MakeStore) -> Store:
    store = make_store()
    run_id = claim_now(store, T0)
    assert run_id is not None
    store.finish(TARGET, run_id, outcome(), T0 + 5)
    return store


def as_an_earlier_release(store: Store, assignments: str, *values: object) -> None:
    """Write the target's row as a release before the interval's anchor would."""
    with store._write() as connection:
        sql = f"UPDATE targets SET {assignments} WHERE target = ?"  # noqa: S608 (the test's own)
        store._execute(connection, sql, (*values, TARGET))


def critical_run(store: Store, now: float, outcome: RunOutcome) -> None:
    """Claim a critical start at `now` and finish it with `outcome` 5 s later."""
    run_id = store.claim(TARGET, store.read_state(TARGET), RUN, now, LEASE, critical=True)
    assert run_id is not None
    assert store.finish(TARGET, run_id, outcome, now + 5)


def test_a_critical_start_its_measure_did_not_bear_out_leaves_the_interval_where_it_was(
    make_store: MakeStore,
):
    store = make_store()
    first = claim_now(store, T0)
    assert first is not None
    assert store.read_state(TARGET).interval_started_ts == T0
    store.finish(TARGET, first, outcome(), T0 + 5)
    critical_run(store, T0 + 900, CONTRADICTED)
    state = store.read_state(TARGET)
    assert (state.last_started_ts, state.last_result) == (T0 + 900, Result.OK)
    assert state.interval_started_ts == T0
    # it pruned nothing: the last success is still the prune's, and its record says so
    assert state.last_success_ts == T0 + 5
    assert [run.needed for run in store.recent_runs(TARGET, 2)] == [False, True]
    assert [run.id for run in store.recent_runs(TARGET, 2, prunes=True)] == [first]


def test_a_critical_start_its_measure_did_not_bear_out_keeps_a_failed_prunes_retry(
    make_store: MakeStore,
):
    store = make_store()
    failed = claim_now(store, T0)
    assert failed is not None
    store.finish(TARGET, failed, outcome(ok=False), T0 + 5)
    policy = PrunePolicy(retry_after_s=3600)  # a retry later than critical_interval_s
    retry_at = next_eligible_ts(store.read_state(TARGET), policy)
    assert retry_at == T0 + 5 + 3600
    critical_run(store, T0 + 900, CONTRADICTED)
    state = store.read_state(TARGET)
    assert (state.last_result, state.last_success_ts) == (Result.FAILED, None)
    assert state.last_finished_ts == T0 + 5
    assert next_eligible_ts(state, policy) == retry_at
    record = store.target_record(TARGET)
    assert record is not None and record.last_error == outcome(ok=False).error
    assert record.last_disk_free == NOT_CRITICAL.disk_free  # what it measured is kept


def test_a_critical_start_its_measure_did_not_bear_out_shows_the_goals_as_it_measured(
    make_store: MakeStore,
):
    store = make_store()
    run_id = claim_now(store, T0)
    assert run_id is not None
    short = replace(outcome(), goal_met=False, free_short_bytes=10 * 10**9)
    store.finish(TARGET, run_id, short, T0 + 5)
    goal = Goals(min_free=FreeGoal(size=30 * 10**9))  # 40 GB free now: met
    critical_run(store, T0 + 900, contradicted(goal))
    record = store.target_record(TARGET)
    assert record is not None
    assert (record.last_goal_met, record.last_free_short_bytes) == (True, 0)
    assert record.last_reclaimed == short.reclaimed  # the last prune's


def test_a_critical_run_that_found_a_prune_needed_counts_from_its_start(make_store: MakeStore):
    store = pruned_at_t0(make_store)
    critical_run(store, T0 + 900, outcome())
    assert store.read_state(TARGET).interval_started_ts == T0 + 900
    # a failed one too (its retry delay applies): it may have reached the host's cache
    critical_run(store, T0 + 1800, outcome(ok=False))
    assert store.read_state(TARGET).interval_started_ts == T0 + 1800


def test_a_start_by_an_earlier_release_after_a_critical_one_counts_from_its_own_start(
    make_store: MakeStore,
):
    store = pruned_at_t0(make_store)
    critical_run(store, T0 + 900, CONTRADICTED)
    assert next_eligible_ts(store.read_state(TARGET), PrunePolicy()) == T0 + 21600
    # its claim moves the last start and the last run, and writes no anchor
    as_an_earlier_release(store, "last_started_ts = ?, last_run_id = last_run_id + 1", T0 + 1800)
    assert next_eligible_ts(store.read_state(TARGET), PrunePolicy()) == T0 + 1800 + 21600


def test_a_critical_start_on_a_row_from_before_the_anchor_keeps_its_last_start(
    make_store: MakeStore,
):
    store = pruned_at_t0(make_store)
    as_an_earlier_release(store, "interval_started_ts = NULL")
    assert store.read_state(TARGET).interval_started_ts is None
    critical_run(store, T0 + 900, CONTRADICTED)
    assert store.read_state(TARGET).interval_started_ts == T0


# -- the watch's measures and the samples --------------------------------------------------

GB = 10**9
WATCHED = {TARGET: 60.0}


def sample(ts: float, free: int = 50 * GB, kind: SampleKind = SampleKind.WATCH) -> Sample:
    return Sample(ts=ts, kind=kind, disk_size=100 * GB, disk_free=free, cache=10 * GB)


def keep(
    store: Store,
    *samples: Sample,
    since: float = 0.0,
    latest: bool = True,
    held: float | None = None,
    rest_until: float | None = None,
) -> list[SampleRecord]:
    """Keeps `samples` as the watch's measure does (`latest`), or as a run's."""
    draw = lambda kept: Forecast(samples=len(kept), window_s=1.0)  # noqa: E731
    return store.add_samples(
        TARGET, samples, since, draw, latest=latest, held=held, rest_until=rest_until
    )[0]


def test_a_measure_is_claimed_once_until_its_sample_is_kept(make_store: MakeStore):
    store, other = make_store(), make_store()
    assert store.claim_measures(WATCHED, T0, hold_s=90) == [TARGET]
    assert other.claim_measures(WATCHED, T0 + 1, hold_s=90) == []  # someone is measuring
    keep(store, sample(T0 + 2), held=T0 + 90)
    assert other.claim_measures(WATCHED, T0 + 30, hold_s=90) == []  # measured 28 s ago
    assert other.claim_measures(WATCHED, T0 + 62, hold_s=90) == [TARGET]


def test_a_measure_that_read_nothing_keeps_its_claim_until_its_rest_ends(make_store: MakeStore):
    store, other = make_store(), make_store()
    assert store.claim_measures(WATCHED, T0, hold_s=10) == [TARGET]
    keep(store, held=T0 + 10, rest_until=T0 + 60)  # the host out of reach: no sample
    assert other.claim_measures(WATCHED, T0 + 20, hold_s=10) == []  # past the hold itself
    assert other.claim_measures(WATCHED, T0 + 59, hold_s=10) == []
    assert other.claim_measures(WATCHED, T0 + 60, hold_s=10) == [TARGET]


def test_a_hold_from_before_the_clock_was_stepped_back_is_stale(make_store: MakeStore):
    store, other = make_store(), make_store()
    assert store.claim_measures(WATCHED, T0, hold_s=90) == [TARGET]  # its measurer died
    assert other.claim_measures(WATCHED, T0 + 1, hold_s=90) == []  # held, as it should be
    assert other.claim_measures(WATCHED, T0 - 1, hold_s=90) == []  # a clock read a moment early
    # the clock went back an hour: a hold ending further ahead than an interval (a failed
    # measure's rest) and twice its length was taken before that
    assert other.claim_measures(WATCHED, T0 - 3600, hold_s=90) == [TARGET]


def test_a_runs_samples_leave_a_measure_held_by_another_replica_alone(make_store: MakeStore):
    store, other = make_store(), make_store()
    assert store.claim_measures(WATCHED, T0, hold_s=90) == [TARGET]
    # a long run ends meanwhile: it measured the disk only before its prunes, minutes ago
    keep(store, sample(T0 - 180, kind=SampleKind.BEFORE), latest=False)
    assert other.claim_measures(WATCHED, T0 + 1, hold_s=90) == []  # still being measured
    assert other.claim_measures(WATCHED, T0 + 91, hold_s=90) == [TARGET]  # the hold ended


def test_a_runs_samples_leave_the_last_measurement_to_its_finish(make_store: MakeStore):
    store = make_store()
    run_id = claim_now(store, T0)
    assert run_id is not None
    store.finish(TARGET, run_id, outcome(), T0 + 60)
    before = store.target_record(TARGET)
    # the run's samples reach the watch after its finish, and may be a dead run's, late
    keep(store, sample(T0 + 30, free=1 * GB), latest=False)
    after = store.target_record(TARGET)
    assert after is not None and before is not None
    assert (after.last_measured_ts, after.last_disk_free, after.last_cache) == (
        before.last_measured_ts, before.last_disk_free, before.last_cache,
    )  # fmt: skip
    assert [s.disk_free for s in store.samples(TARGET, 0.0)] == [1 * GB]  # kept as a sample


def test_a_measure_that_outlasted_its_hold_leaves_the_next_ones_hold_alone(
    make_store: MakeStore,
):
    store, other = make_store(), make_store()
    assert store.claim_measures(WATCHED, T0, hold_s=90) == [TARGET]
    assert other.claim_measures(WATCHED, T0 + 91, hold_s=90) == [TARGET]  # the first hung
    keep(store, Sample(ts=T0 + 95, kind=SampleKind.WATCH), held=T0 + 90)  # it read nothing
    assert store.claim_measures(WATCHED, T0 + 96, hold_s=90) == []  # the other one measures


def test_a_measure_never_kept_is_claimed_again_once_its_hold_ends(make_store: MakeStore):
    store = make_store()
    assert store.claim_measures(WATCHED, T0, hold_s=90) == [TARGET]
    assert store.claim_measures(WATCHED, T0 + 89, hold_s=90) == []
    assert store.claim_measures(WATCHED, T0 + 91, hold_s=90) == [TARGET]


def test_a_sweep_claims_every_due_target_in_one_call(make_store: MakeStore):
    store = make_store()
    due = {f"t{i}": 60.0 for i in range(50)}
    assert sorted(store.claim_measures(due, T0, hold_s=90)) == sorted(due)
    assert store.claim_measures(due, T0 + 1, hold_s=90) == []


def test_a_measure_is_no_prune_for_the_interval(make_store: MakeStore):
    store = make_store()
    store.claim_measures(WATCHED, T0, hold_s=90)
    keep(store, sample(T0 + 1))
    assert store.read_state(TARGET) == TargetState()
    assert store.recent_runs(TARGET) == []
    record = store.target_record(TARGET)
    assert record is not None
    assert (record.last_measured_ts, record.last_disk_free) == (T0 + 1, 50 * GB)


def test_samples_are_kept_with_the_forecast_drawn_from_them(make_store: MakeStore):
    store = make_store()
    run_id = claim_now(store, T0)
    assert run_id is not None
    store.finish(TARGET, run_id, outcome(), T0 + 5)
    kept = keep(
        store, sample(T0 + 6, kind=SampleKind.BEFORE), sample(T0 + 7, 60 * GB, SampleKind.AFTER)
    )
    assert [(s.ts, s.kind, s.disk_free) for s in kept] == [
        (T0 + 6, SampleKind.BEFORE, 50 * GB), (T0 + 7, SampleKind.AFTER, 60 * GB),
    ]  # fmt: skip
    assert keep(store, sample(T0 + 8), since=T0 + 7)[0].ts == T0 + 7
    assert [s.ts for s in store.samples(TARGET, T0 + 7.5)] == [T0 + 8]
    record = store.target_record(TARGET)
    assert record is not None and record.forecast == Forecast(samples=2, window_s=1.0)
    assert record.last_run_id == run_id  # the run's row is kept


def test_samples_are_bounded_by_count_and_by_age(make_store: MakeStore):
    store = make_store()
    for start in range(0, SAMPLES_KEPT + 10, 100):
        batch = [sample(T0 + ts) for ts in range(start, min(start + 100, SAMPLES_KEPT + 10))]
        keep(store, *batch)
    kept = store.samples(TARGET, 0.0)
    assert len(kept) == SAMPLES_KEPT
    assert kept[0].ts == T0 + 10  # the oldest went first
    week_on = T0 + SAMPLES_KEPT + 10 + SAMPLES_KEPT_S  # a week after the newest
    keep(store, sample(week_on))
    assert [s.ts for s in store.samples(TARGET, 0.0)] == [week_on]


def test_samples_of_one_target_leave_anothers_alone(make_store: MakeStore):
    store = make_store()
    store.add_samples("other", [sample(T0)], 0.0, lambda kept: Forecast(samples=1, window_s=1.0))
    keep(store, sample(T0 + SAMPLES_KEPT_S + 1))
    assert [s.ts for s in store.samples("other", 0.0)] == [T0]


def test_a_sample_that_read_nothing_keeps_the_hosts_last_measurement(make_store: MakeStore):
    store = make_store()
    store.claim_measures(WATCHED, T0, hold_s=90)
    keep(store, sample(T0 + 1, free=42 * GB))
    keep(store, Sample(ts=T0 + 61, kind=SampleKind.WATCH), held=T0 + 90)  # the probes failed
    record = store.target_record(TARGET)
    assert record is not None
    assert (record.last_measured_ts, record.last_disk_free) == (T0 + 1, 42 * GB)
    assert record.measuring_until_ts is None
