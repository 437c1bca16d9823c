"""Property: whatever the trigger times and outcomes, no two runs start within the interval,
a failed run is retried no sooner than the retry delay, a live lease is never overtaken, and
a due trigger starts a run. The service decides, the store claims: run on every backend."""

from __future__ import annotations

import itertools
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness import failed_outcome, succeeded_outcome
from webhook.core.outcome import RunOutcome
from webhook.core.targets import Fleet, PrunePolicy, SSHEndpoint, Target
from webhook.service import PruneService
from webhook.store import Store

INTERVAL, RETRY, LEASE = 3600.0, 600.0, 180.0
POLICY = PrunePolicy(interval_s=INTERVAL, retry_after_s=RETRY, timeout_s=120, lease_grace_s=60)
# one database for all examples (a backend's server is slow to make): a target each
ONE_DATABASE = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]

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


class Claims:
    """The service deciding for one fresh target at injected times; runs are not run."""

    def __init__(self, store: Store):
        self.now = 0.0
        self.target = Target(f"t-{uuid.uuid4().hex[:12]}", SSHEndpoint("127.0.0.1"), POLICY)
        self.store = store
        self.service = PruneService(
            Fleet((self.target,)), store, unreachable, clock=lambda: self.now
        )

    def trigger(self) -> int | None:
        return self.service.claim(self.target, "property").run_id

    def finish(self, run_id: int, ok: bool) -> None:
        self.store.finish(self.target.name, run_id, outcome(ok), self.now)


def unreachable(target, command):
    raise AssertionError("claims are never launched here")


@settings(max_examples=200, deadline=None, suppress_health_check=ONE_DATABASE)
@given(sequence=steps)
def test_runs_respect_interval_retry_delay_and_lease(store, sequence):
    check_safety(Claims(store), sequence)


def check_safety(claims: Claims, sequence) -> None:
    starts = walk(claims, sequence, check_due=False)
    for previous, following in itertools.pairwise(starts):
        gap = following["at"] - previous["at"]
        if previous["ended"] is None:
            assert gap >= LEASE, "a run started while another's lease was live"
        elif previous["ok"]:
            assert gap >= INTERVAL, "two runs started within the interval"
        else:
            earliest = min(previous["at"] + INTERVAL, previous["ended"] + RETRY)
            assert following["at"] >= earliest, "a failed run was retried too soon"


def walk(claims: Claims, sequence, *, check_due: bool) -> list[dict]:
    """Play `sequence` against the store: the runs it started, in order. With `check_due`,
    each trigger must start a run exactly when `due` says the policy allows one."""
    in_flight = None
    starts: list[dict] = []
    for gap, step in sequence:
        claims.now += gap
        now = claims.now
        if step == "trigger":
            expected = due(starts, now)
            run_id = claims.trigger()
            if check_due:
                assert (run_id is not None) == expected, (now, starts)
            if run_id is not None:
                starts.append({"at": now, "ended": None, "ok": None})
                in_flight = run_id
        elif step == "die":
            in_flight = None  # its worker is gone: the run never finishes
        elif in_flight is not None:
            claims.finish(in_flight, step == "finish_ok")
            starts[-1].update(ended=now, ok=step == "finish_ok")
            in_flight = None
    return starts


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


@settings(max_examples=200, deadline=None, suppress_health_check=ONE_DATABASE)
@given(sequence=steps)
def test_a_due_trigger_always_starts_a_run(store, sequence):
    """Liveness: safety alone passes with a store that never starts anything."""
    check_liveness(Claims(store), sequence)


def check_liveness(claims: Claims, sequence) -> None:
    walk(claims, sequence, check_due=True)
