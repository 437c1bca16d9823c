"""The service: every trigger's decision, for each target it concerns, and the runs.

It is the one place that decides. A verdict (from a hook, the CLI or a test)
names hosts or target names, or nothing (then every target); the service finds
the configured targets, decides for each with the pure `decide`, claims a run
with the store's compare-and-set, runs the prune in the background (at most
`max_parallel` at once in this process), records and reports it. I/O comes
in: the store, the runner, the clock, the listeners.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from webhook.core.command import build_prune_command
from webhook.core.decision import Action, Decision, clock_step, decide
from webhook.core.outcome import ErrorKind, Execution, RunOutcome, summarize
from webhook.core.targets import Fleet, Target
from webhook.core.verdicts import Verdict
from webhook.stages import CommandSession, OpenSession, RunCommand, StagedRuns, run_limit_s
from webhook.store import NewRun, RunRecord, Store, StoreUnavailable

if TYPE_CHECKING:
    from webhook.core.decision import TargetState

log = logging.getLogger(__name__)
FINISH_ATTEMPTS = 10
FINISH_BACKOFF_S = 1.0
CLAIM_ATTEMPTS = 3


class Answer(StrEnum):
    """What a trigger answers for a target: the decision's actions, and the API's own."""

    STARTED = "started"
    SKIPPED = "skipped"
    BUSY = "busy"
    DISABLED = "disabled"
    NO_TARGET = "no_target"
    IGNORED = "ignored"
    DUPLICATE = "duplicate"
    UNKNOWN_TARGET = "unknown_target"


# runs a command on a target: the SSH runner, or a fake in service-level tests


@dataclass(frozen=True)
class TargetResult:
    target: str | None
    answer: Answer
    reason: str
    run_id: int | None = None
    next_eligible_ts: float | None = None
    run: RunRecord | None = None
    # the host value an alert named, when it is no target
    unknown_host: str | None = None


@dataclass(frozen=True)
class TriggerOutcome:
    verdict: Verdict
    results: tuple[TargetResult, ...]
    request_id: str | None = None

    @property
    def answer(self) -> Answer:
        """`started` when any target started, else the first item's answer."""
        return self.first.answer

    @property
    def first(self) -> TargetResult:
        return self.results[self.first_index]

    @property
    def first_index(self) -> int:
        """Where the first item that started is, else 0 (the first item)."""
        for index, result in enumerate(self.results):
            if result.answer == Answer.STARTED:
                return index
        return 0


DecidedListener = Callable[[TriggerOutcome], object]
FinishedListener = Callable[[Target, RunOutcome], object]


@dataclass
class Listeners:
    decided: list[DecidedListener] = field(default_factory=list)
    finished: list[FinishedListener] = field(default_factory=list)


class PruneService:
    def __init__(
        self,
        fleet: Fleet,
        store: Store,
        run_command: RunCommand,
        *,
        enabled: bool = True,
        routes_by_host: bool = False,
        max_parallel: int = 8,
        clock: Callable[[], float] = time.time,
        listeners: Listeners | None = None,
        open_session: OpenSession | None = None,
    ):
        self.fleet = fleet
        self.store = store
        self.run_command = run_command
        # a run's probes and stages share one session: the SSH runner's, or one over
        # `run_command` (a call per command) where no sessions are given
        self.stages = StagedRuns(
            open_session or (lambda target: CommandSession(run_command, target))
        )
        self.enabled = enabled
        self.routes_by_host = routes_by_host
        self.clock = clock
        self.listeners = listeners or Listeners()
        self.max_parallel = max_parallel
        self._slots = threading.BoundedSemaphore(max_parallel)
        # runs launched and not yet finished in this process: running, or waiting for a slot
        self._pending = 0
        self._threads: dict[int, threading.Thread] = {}
        self._lock = threading.Lock()

    # -- what a verdict concerns -------------------------------------------------
    def concerned(self, verdict: Verdict) -> tuple[list[Target], list[TargetResult]]:
        """The configured targets a verdict concerns, and an item per name that is none."""
        if verdict.names is not None:
            found = [self.fleet.get(name) for name in verdict.names]
            return [t for t in found if t is not None], [
                TargetResult(None, Answer.UNKNOWN_TARGET, f"no target is named {name!r}")
                for name, t in zip(verdict.names, found, strict=True)
                if t is None
            ]
        if verdict.hosts is None or not self.routes_by_host:
            return list(self.fleet), []
        targets: dict[str, Target] = {}
        unknown: list[TargetResult] = []
        for host in verdict.hosts:
            matched = self.fleet.concerning(host)
            if not matched:
                reason = f"host {host[:253]!r} is no configured target"
                unknown.append(TargetResult(None, Answer.UNKNOWN_TARGET, reason, unknown_host=host))
            targets.update((t.name, t) for t in matched)
        return list(targets.values()), unknown

    def command(self, target: Target) -> str:
        return build_prune_command(target.policy.until, target.policy.prune_all)

    def wait_limit_s(self, target: Target) -> float:
        """How long a caller may wait for a run: connecting, its stages and probes, and
        recording it."""
        return run_limit_s(target.policy.timeout_s) + 3 * target.ssh.connect_timeout_s + 5

    # -- deciding ----------------------------------------------------------------
    def handle(
        self,
        verdict: Verdict,
        *,
        wait: bool = False,
        force: bool = False,
        request_id: str | None = None,
    ) -> TriggerOutcome:
        """Decide for every target the verdict concerns; start what is due."""
        targets, unknown = self.concerned(verdict)
        results: list[TargetResult] = []
        if not self.fleet:
            results.append(TargetResult(None, Answer.NO_TARGET, "no build host is configured"))
        elif not verdict.wants_prune:
            results += [TargetResult(t.name, Answer.IGNORED, verdict.reason) for t in targets]
        elif not self.enabled:
            reason = "prunes are disabled (PRUNEHOOK_ENABLED=false)"
            results += [TargetResult(t.name, Answer.DISABLED, reason) for t in targets]
        else:
            started = [self._start_if_due(t, verdict, force, request_id) for t in targets]
            if wait:
                started = [self._wait(t, r) for t, r in zip(targets, started, strict=True)]
            results += started
        results += unknown
        if not results:
            reason = verdict.reason
            if verdict.wants_prune and verdict.hosts == ():
                reason = "no firing alert carries a host label (PRUNEHOOK_HOST_LABELS)"
            results.append(TargetResult(None, Answer.IGNORED, reason))
        outcome = TriggerOutcome(verdict, tuple(results), request_id)
        self._decided(outcome)
        return outcome

    def duplicate(self, verdict: Verdict, request_id: str | None = None) -> TriggerOutcome:
        """A signed delivery seen before: answered, counted and logged, never decided."""
        result = TargetResult(None, Answer.DUPLICATE, "this webhook-id was already received")
        outcome = TriggerOutcome(verdict, (result,), request_id)
        self._decided(outcome)
        return outcome

    def _decided(self, outcome: TriggerOutcome) -> None:
        verdict = outcome.verdict
        for result in outcome.results:
            log.info(
                "trigger %s: %s for %s",
                verdict.source,
                result.answer,
                result.target or "-",
                extra={
                    "fields": {
                        "event": "trigger",
                        "source": verdict.source,
                        "target": result.target,
                        "decision": result.answer,
                        "reason": result.reason,
                        "trigger": verdict.reason,
                        "run_id": result.run_id,
                        "request_id": outcome.request_id,
                    }
                },
            )
        for listener in self.listeners.decided:
            try:
                listener(outcome)
            except Exception:
                log.exception("%r failed", listener)

    def _start_if_due(
        self, target: Target, verdict: Verdict, force: bool, request_id: str | None
    ) -> TargetResult:
        critical = self.is_critical(target, verdict)
        result = self.claim(
            target, verdict.trigger, force=force, request_id=request_id, critical=critical
        )
        if result.run_id is not None:
            self.launch(target, result.run_id, request_id)
        return result

    def is_critical(self, target: Target, verdict: Verdict) -> bool:
        """The disk of `target` is nearly full, as the trigger says (DESIGN.md, "Critical")."""
        routed = self.routes_by_host and verdict.hosts is not None
        known_as = target.known_as if routed else None
        return verdict.is_critical(known_as, target.policy.critical_percent)

    def claim(
        self,
        target: Target,
        trigger: str,
        *,
        force: bool = False,
        request_id: str | None = None,
        critical: bool = False,
    ) -> TargetResult:
        """Decide for `target` now and, when due, claim a run (its id in the result) that
        the caller must `launch`. The store's compare-and-set makes the claim exclusive:
        when the state changed since it was read, it is read and decided again."""
        run: NewRun | None = None
        for _ in range(CLAIM_ATTEMPTS):
            now = self.clock()
            state = self._current_state(target, now, request_id)
            if state is None:
                continue  # changed while its clock step was corrected: look again
            decision = decide(state, now, target.policy, force, critical)
            if decision.action != Action.STARTED:
                return _result(target, decision)
            # built only for a start: a skip, the common answer, needs no command
            run = run or NewRun(trigger, self.command(target), os.getpid(), request_id)
            run_id = self.store.claim(target.name, state, run, now, self._lease_s(target))
            if run_id is not None:
                return _result(target, decision, run_id)
        # others changed the state each time it was read: they are busy with the target
        reason = "the target's state changed under every attempt to claim it; busy"
        return TargetResult(target.name, Answer.BUSY, reason)

    def _lease_s(self, target: Target) -> float:
        """A lease long enough for the runs queued ahead of this one in this process, too
        (a sweep of many targets): it is renewed to one lease when the run gets its slot, so a
        run that merely waits is never shown as lost, nor given up by another trigger."""
        with self._lock:
            waves = 1 + self._pending // self.max_parallel
        return target.policy.lease_s * waves

    def _current_state(
        self, target: Target, now: float, request_id: str | None
    ) -> TargetState | None:
        """The stored state, with times ahead of `now` (the clock was stepped back) capped
        and written back; None when it changed while being corrected."""
        state = self.store.read_state(target.name)
        step = clock_step(state, now, target.policy.lease_s)
        if step is None:
            return state
        log.warning(
            "stored times of %s were %.0f s ahead of the clock: it was stepped back; capped",
            target.name,
            step.ahead_s,
            extra={
                "fields": {
                    "event": "clock_step",
                    "target": target.name,
                    "ahead_s": round(step.ahead_s, 3),
                    "request_id": request_id,
                }
            },
        )
        if not self.store.correct_times(target.name, state, step.state):
            return None
        return step.state

    def _wait(self, target: Target, result: TargetResult) -> TargetResult:
        if result.run_id is None:
            return result
        with self._lock:
            thread = self._threads.get(result.run_id)
        if thread is not None:
            thread.join(self.wait_limit_s(target))
        return replace(result, run=self.store.run(result.run_id))

    # -- running -----------------------------------------------------------------
    def launch(self, target: Target, run_id: int, request_id: str | None) -> None:
        """Run a claimed prune in the background, after waiting for one of the slots."""
        # not a daemon: on a graceful stop the worker waits for the prune to finish and record
        thread = threading.Thread(
            target=self._queued,
            args=(target, run_id, request_id),
            name=f"prune-{target.name}-{run_id}",
            daemon=False,
        )
        with self._lock:
            self._threads = {k: t for k, t in self._threads.items() if t.is_alive()}
            self._threads[run_id] = thread
            self._pending += 1
        thread.start()

    def _queued(self, target: Target, run_id: int, request_id: str | None) -> None:
        try:
            self._run_in_slot(target, run_id, request_id)
        finally:
            with self._lock:
                self._pending -= 1

    def _run_in_slot(self, target: Target, run_id: int, request_id: str | None) -> None:
        with self._slots:
            # the lease ran while the run waited for a slot: it starts counting now
            expires = self.clock() + target.policy.lease_s
            try:
                if not self.store.renew_lease(target.name, run_id, expires):
                    log.warning("run %s: given up while it waited for a slot", run_id)
                    return
            except StoreUnavailable as error:
                log.error("run %s: cannot renew its lease: %s", run_id, error)
            self.execute(target, run_id, request_id)

    def join_all(self, timeout: float | None = None) -> None:
        """Wait for the runs this process started (tests, CLI and shutdown)."""
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(timeout)

    def execute(self, target: Target, run_id: int, request_id: str | None = None) -> RunOutcome:
        """Run the claimed prune, record its outcome, tell the listeners. Never raises."""
        try:
            outcome = self.stages.run(target, lambda: self._still_owns(target, run_id))
        except Exception as error:
            log.exception("run %s: the command runner raised", run_id)
            execution = Execution(None, "", "", 0.0, ErrorKind.INTERNAL, type(error).__name__)
            outcome = summarize(execution)
        self._record(target, run_id, outcome)
        log.info(
            "run %s on %s %s",
            run_id,
            target.name,
            "ok" if outcome.ok else f"failed: {outcome.error_kind}",
            extra={
                "fields": {
                    "event": "run_finished",
                    "run_id": run_id,
                    "request_id": request_id,
                    "target": target.name,
                    "result": "ok" if outcome.ok else "failed",
                    "rc": outcome.rc,
                    "reclaimed": outcome.reclaimed,
                    "reclaimed_bytes": outcome.reclaimed_bytes,
                    "error_kind": outcome.error_kind,
                    "error": outcome.error,
                    "duration_s": outcome.duration_s,
                    "freed_bytes": outcome.freed_bytes,
                    "disk_free_after": outcome.disk_free_after,
                    "cache_after": outcome.cache_after,
                    "keep_storage_bytes": outcome.keep_storage_bytes,
                    "goal_met": outcome.goal_met,
                    "free_short_bytes": outcome.free_short_bytes,
                    "notes": list(outcome.notes),
                }
            },
        )
        for listener in self.listeners.finished:
            try:
                listener(target, outcome)
            except Exception:
                log.exception("run %s: %r failed", run_id, listener)
        return outcome

    def _still_owns(self, target: Target, run_id: int) -> bool:
        """Before each command of a run: renew its lease, so a run of several stages keeps
        its target; False when a newer run owns it (this one was given up as lost)."""
        try:
            return self.store.renew_lease(target.name, run_id, self.clock() + target.policy.lease_s)
        except StoreUnavailable as error:
            log.error("run %s: cannot renew its lease: %s", run_id, error)
            return True

    def _record(self, target: Target, run_id: int, outcome: RunOutcome) -> None:
        for attempt in range(1, FINISH_ATTEMPTS + 1):
            try:
                if not self.store.finish(target.name, run_id, outcome, self.clock()):
                    log.warning(
                        "run %s finished after its lease expired; a newer run owns %s",
                        run_id,
                        target.name,
                    )
                return
            except StoreUnavailable as error:
                log.error(
                    "run %s: cannot record the outcome (attempt %s): %s", run_id, attempt, error
                )
                time.sleep(FINISH_BACKOFF_S * attempt)
        log.error("run %s: outcome not recorded; its lease will expire and mark it lost", run_id)


# the answer of each action, looked up rather than made: calling an Enum costs more
_ANSWERS = {action: Answer(action.value) for action in Action}


def _result(target: Target, decision: Decision, run_id: int | None = None) -> TargetResult:
    return TargetResult(
        target.name, _ANSWERS[decision.action], decision.reason, run_id, decision.next_eligible_ts
    )
