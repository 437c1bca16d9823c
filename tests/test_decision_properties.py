"""Property: whatever the trigger times and outcomes, no two runs start within the interval,
a failed run is retried no sooner than the retry delay, and a live lease is never overtaken."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness import failed_outcome, succeeded_outcome
from webhook.core.decision import Action, Policy
from webhook.core.outcome import RunOutcome
from webhook.store.sqlite import Store

INTERVAL, RETRY, LEASE = 3600.0, 600.0, 180.0
POLICY = Policy(enabled=True, has_target=True, interval_s=INTERVAL, retry_after_s=RETRY)

# the edges of the lease, the retry delay and the interval, where bugs live
EDGES = [0.0, 0.5, 179.5, 180.0, 599.5, 600.0, 3599.5, 3600.0]
gaps = st.one_of(
    st.sampled_from(EDGES),
    # half seconds add up exactly in binary, so the checks below compare exact times
    st.integers(min_value=0, max_value=10000).map(lambda halves: halves / 2),
)
steps = st.lists(
    st.tuples(
        st.one_of(st.sampled_from(EDGES), gaps),
        st.sampled_from(["trigger", "trigger", "trigger", "finish_ok", "finish_failed", "die"]),
    ),
    max_size=40,
)


def outcome(ok: bool) -> RunOutcome:
    return succeeded_outcome(None) if ok else failed_outcome()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_runs_respect_interval_retry_delay_and_lease(sequence):
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "state.sqlite3")
        store.init_schema()
        now, in_flight = 0.0, None
        starts: list[dict] = []
        for gap, step in sequence:
            now += gap
            if step == "trigger":
                claim = store.claim("t", now, POLICY, trigger="p", command="c", lease_s=LEASE)
                if claim.decision.action == Action.STARTED:
                    starts.append({"at": now, "ended": None, "ok": None})
                    in_flight = claim.run_id
            elif step == "die":
                in_flight = None  # its worker is gone: the run never finishes
            elif in_flight is not None:
                store.finish("t", in_flight, outcome(step == "finish_ok"), now)
                starts[-1].update(ended=now, ok=step == "finish_ok")
                in_flight = None

        for previous, following in itertools.pairwise(starts):
            gap = following["at"] - previous["at"]
            if previous["ended"] is None:
                assert gap >= LEASE, "a run started while another's lease was live"
            elif previous["ok"]:
                assert gap >= INTERVAL, "two runs started within the interval"
            else:
                earliest = min(previous["at"] + INTERVAL, previous["ended"] + RETRY)
                assert following["at"] >= earliest, "a failed run was retried too soon"


def due(starts: list[dict], now: float) -> bool:
    """Whether the policy lets a run start at `now`, from the runs started so far."""
    if not starts:
        return True
    last = starts[-1]
    if last["ended"] is None:  # in flight, or its worker died: the lease must run out
        return now >= last["at"] + LEASE
    if last["ok"]:
        return now >= last["at"] + INTERVAL
    return now >= min(last["at"] + INTERVAL, last["ended"] + RETRY)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_a_due_trigger_always_starts_a_run(sequence):
    """Liveness: safety alone passes with a store that never starts anything."""
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "state.sqlite3")
        store.init_schema()
        now, in_flight = 0.0, None
        starts: list[dict] = []
        for gap, step in sequence:
            now += gap
            if step == "trigger":
                expected = due(starts, now)
                claim = store.claim("t", now, POLICY, trigger="p", command="c", lease_s=LEASE)
                started = claim.decision.action == Action.STARTED
                assert started == expected, (now, starts, claim.decision)
                if started:
                    starts.append({"at": now, "ended": None, "ok": None})
                    in_flight = claim.run_id
            elif step == "die":
                in_flight = None
            elif in_flight is not None:
                store.finish("t", in_flight, outcome(step == "finish_ok"), now)
                starts[-1].update(ended=now, ok=step == "finish_ok")
                in_flight = None
