"""What to notify about a finished run, and why: the pure decision (webhook/core/notices.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from webhook.core.decision import Result
from webhook.core.notices import (
    Notice,
    NoticePolicy,
    Reason,
    Severity,
    failure_streak,
    free_space_short_bytes,
    notices_for,
)
from webhook.core.outcome import ErrorKind, RunOutcome

GB = 1000**3
OK = RunOutcome(True, 0, "1.5GB", 1_500_000_000, None, None, 0.2, "", "")
FAILED = RunOutcome(
    False, None, None, None, ErrorKind.AUTH_FAILED, "Authentication failed.", 1.0, "", ""
)
POLICY = NoticePolicy(min_reclaim_bytes=1 * GB, failures=3)


def short_by(outcome: RunOutcome, short: object) -> RunOutcome:
    """`outcome` as the disk-aware stages make it, with a shortfall of free space (of any
    type: the notice must not trust it)."""
    return replace(outcome, free_short_bytes=short)


def reasons(notices: tuple[Notice, ...]) -> list[Reason]:
    return [notice.reason for notice in notices]


@pytest.mark.parametrize(
    ("reclaimed_bytes", "min_reclaim_bytes", "told"),
    [
        (1_500_000_000, 1 * GB, True),
        (1_000_000_000, 1 * GB, True),  # at least the threshold
        (999_999_999, 1 * GB, False),
        (1_500_000_000, 2 * GB, False),
        (1_500_000_000, 0, False),  # 0 = silent
        (None, 1, False),  # Docker printed no total
    ],
)
def test_a_reclaim_is_told_from_the_threshold_on(reclaimed_bytes, min_reclaim_bytes, told):
    outcome = replace(OK, reclaimed_bytes=reclaimed_bytes)
    policy = NoticePolicy(min_reclaim_bytes=min_reclaim_bytes, failures=3)
    assert reasons(notices_for("build-1", outcome, 0, policy)) == (
        [Reason.RECLAIMED] if told else []
    )


def test_the_reclaim_notice_says_where_how_much_and_is_a_success():
    (notice,) = notices_for("build-1", OK, 0, POLICY)
    assert (notice.target, notice.severity) == ("build-1", Severity.SUCCESS)
    assert notice.title == "prunehook: reclaimed 1.5GB on build-1"
    assert "1500000000 bytes" in notice.body


@pytest.mark.parametrize(("streak", "told"), [(1, False), (2, False), (3, True), (4, False)])
def test_failures_are_told_once_when_the_streak_reaches_n(streak, told):
    assert reasons(notices_for("build-1", FAILED, streak, POLICY)) == (
        [Reason.FAILURES] if told else []
    )


def test_the_failures_notice_names_the_count_and_the_last_error():
    (notice,) = notices_for("build-1", FAILED, 3, POLICY)
    assert notice.severity == Severity.FAILURE
    assert notice.title == "prunehook: 3 failed prunes in a row on build-1"
    assert "auth_failed: Authentication failed." in notice.body


def test_a_long_error_is_cut_in_the_message():
    outcome = replace(FAILED, error="x" * 5000)
    (notice,) = notices_for("build-1", outcome, 3, POLICY)
    assert len(notice.body) < 600


def test_one_failure_is_enough_when_so_configured_and_zero_never_tells():
    (notice,) = notices_for("b", FAILED, 1, NoticePolicy(failures=1))
    assert notice.title == "prunehook: a prune failed on b"
    assert notices_for("b", FAILED, 5, NoticePolicy(failures=0)) == ()


def test_a_successful_run_is_never_a_failure_notice_whatever_the_streak():
    assert reasons(notices_for("b", OK, 3, NoticePolicy(failures=3))) == []


@pytest.mark.parametrize(
    ("results", "streak"),
    [
        ([], 0),
        ([Result.OK, Result.FAILED], 0),
        ([Result.FAILED, Result.FAILED, Result.OK, Result.FAILED], 2),
        ([Result.FAILED, Result.LOST, Result.FAILED], 3),  # a lost run failed too
        ([Result.RUNNING, Result.FAILED, Result.FAILED], 2),  # a newer run still in flight
        ([Result.FAILED, Result.RUNNING, Result.FAILED], 1),
    ],
)
def test_the_streak_counts_failed_runs_from_the_newest(results, streak):
    assert failure_streak(results) == streak


def test_free_space_still_short_after_the_last_stage_is_told_with_the_shortfall():
    outcome = short_by(OK, 2_100_000_000)
    notices = notices_for("build-1", outcome, 0, NoticePolicy(min_reclaim_bytes=0))
    (notice,) = notices
    assert (notice.reason, notice.severity) == (Reason.DISK_LOW, Severity.WARNING)
    # the shortfall, never read as what is free
    assert "free space is still 2.1GB (2100000000 bytes) short of min_free" in notice.body


def test_a_failed_run_that_left_the_disk_short_tells_both():
    outcome = short_by(FAILED, 1)
    assert reasons(notices_for("b", outcome, 3, POLICY)) == [Reason.FAILURES, Reason.DISK_LOW]


@pytest.mark.parametrize(
    ("short", "read"), [(None, None), (0, 0), (-5, -5), (True, None), ("12", None), (1.5, None)]
)
def test_no_shortfall_or_a_goal_met_tells_nothing(short, read):
    outcome = short_by(OK, short)
    assert free_space_short_bytes(outcome) == read  # only an int is a shortfall
    assert notices_for("b", outcome, 0, NoticePolicy(min_reclaim_bytes=0)) == ()


def test_an_outcome_that_measured_no_shortfall_has_none():
    """No goal set, or the disk could not be measured: `free_short_bytes` is None."""
    assert free_space_short_bytes(OK) is None
    assert reasons(notices_for("b", OK, 0, POLICY)) == [Reason.RECLAIMED]
