"""The service: every trigger's decision, for each target it concerns.

It is the one place that decides. A trigger (from a hook, the CLI or a test)
names hosts or target names, or nothing (then every target); the service finds
the configured targets, decides for each with the pure `decide`, claims a run
with the store's compare-and-set and hands it to `Runs`, which runs, records and
reports it in the background. I/O comes in: the store, the runner, the clock,
the listeners.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from webhook.core.command import build_prune_command
from webhook.core.decision import Answer, Decision, clock_step, decide
from webhook.core.forecast import Act, Forecast, Verdict
from webhook.core.targets import Fleet, Target
from webhook.core.triggers import Source, Trigger
from webhook.listeners import tell
from webhook.remote.session import CommandSession, Execute, OpenSession
from webhook.runs import FinishedListener, HostAccess, Orders, Runs, run_limit_s
from webhook.store import NewRun, RunRecord, Store, StoreUnavailable
from webhook.watch import MeasuredListener, Watch, measure_limit_s

if TYPE_CHECKING:
    from webhook.core.decision import TargetState

log = logging.getLogger(__name__)
CLAIM_ATTEMPTS = 3
NO_TARGET = "no build host is configured: set PRUNEHOOK_SSH_HOST or PRUNEHOOK_TARGETS_FILE"
UNAVAILABLE = "the state database failed while deciding this target: nothing started; retry"
# host values that are no target, named one by one in an answer; the rest are counted
UNKNOWN_SHOWN = 10
# what an alert storm or a fleet's cron ping repeats all day, with nothing to act on: logged
# at DEBUG (PRUNEHOOK_LOG_LEVEL), still answered and counted in /metrics
ROUTINE = frozenset({Answer.SKIPPED, Answer.BUSY})


@dataclass(frozen=True)
class TargetResult:
    target: str | None
    answer: Answer
    reason: str
    run_id: int | None = None
    next_eligible_ts: float | None = None
    run: RunRecord | None = None
    # how many host values the trigger named that are no target (one item says them all)
    unknown_hosts: int = 0
    # started on the trigger's word that the disk is critical (Decision.critical)
    critical: bool = False


@dataclass(frozen=True)
class TriggerOutcome:
    trigger: Trigger
    results: tuple[TargetResult, ...]
    request_id: str | None = None

    @property
    def answer(self) -> Answer:
        """`started` when any target started, else the first item's answer."""
        return self.results[self.first_index].answer

    @property
    def first_index(self) -> int:
        """Where the first item that started is, else 0 (the first item)."""
        started = (i for i, result in enumerate(self.results) if result.answer == Answer.STARTED)
        return next(started, 0)


DecidedListener = Callable[[TriggerOutcome], object]


def _logged(result: TargetResult, event: str, **more: object) -> dict[str, object]:
    """A decision's log line's fields (logs.py)."""
    said = {"target": result.target, "decision": result.answer, "reason": result.reason}
    return {"fields": {"event": event, **said, "run_id": result.run_id, **more}}


@dataclass
class Listeners:
    decided: list[DecidedListener] = field(default_factory=list)
    finished: list[FinishedListener] = field(default_factory=list)
    measured: list[MeasuredListener] = field(default_factory=list)


class PruneService:
    def __init__(
        self,
        fleet: Fleet,
        store: Store,
        execute: Execute,
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
        self.enabled = enabled
        self.routes_by_host = routes_by_host
        self.clock = clock
        self.listeners = listeners or Listeners()
        # a run's probes and stages share one session: the SSH runner's, or one over
        # `execute` (a call per command) where no sessions are given
        open_session = open_session or (lambda target: CommandSession(execute, target))
        # the watch measures as the runs do: through the same sessions, with the versions
        # they learned
        access = HostAccess(store, open_session, clock)
        self.watch = Watch(access, max_parallel, self.start_watched, self.listeners.measured)
        # a run's measures are samples before anyone is told of the run
        self.listeners.finished.insert(0, self.watch.run_finished)
        self.runs = Runs(access, max_parallel, self.listeners.finished)

    # -- what a trigger concerns -------------------------------------------------
    def route(self, trigger: Trigger) -> tuple[list[Target], list[TargetResult]]:
        """The configured targets a trigger concerns, and an item per name that is none."""
        if trigger.names is not None:
            found = [self.fleet.get(name) for name in trigger.names]
            return [t for t in found if t is not None], [
                TargetResult(None, Answer.UNKNOWN_TARGET, f"no target is named {name!r}")
                for name, t in zip(trigger.names, found, strict=True)
                if t is None
            ]
        if trigger.hosts is None or not self.routes_by_host:
            return list(self.fleet), []
        targets: dict[str, Target] = {}
        unknown: list[str] = []
        for host in trigger.hosts:
            matched = self.fleet.route(host)
            if not matched:
                unknown.append(host)
            targets.update((t.name, t) for t in matched)
        return list(targets.values()), [_unknown_hosts(unknown)] if unknown else []

    def command(self, target: Target) -> str:
        return build_prune_command(target.policy.until, target.policy.prune_all)

    # -- deciding ----------------------------------------------------------------
    def handle(
        self,
        trigger: Trigger,
        *,
        wait: bool = False,
        force: bool = False,
        request_id: str | None = None,
    ) -> TriggerOutcome:
        """Decide for every target the trigger concerns; start what is due."""
        targets, unknown = self.route(trigger)
        results: list[TargetResult] = []
        if not self.fleet:
            results.append(TargetResult(None, Answer.NO_TARGET, NO_TARGET))
        elif not trigger.wants_prune:
            results += [TargetResult(t.name, Answer.IGNORED, trigger.reason) for t in targets]
        elif not self.enabled:
            reason = "prunes are disabled (PRUNEHOOK_ENABLED=false)"
            results += [TargetResult(t.name, Answer.DISABLED, reason) for t in targets]
        else:
            started = [self._start_if_due(t, trigger, force, request_id) for t in targets]
            if wait:
                started = [self._wait(t, r) for t, r in zip(targets, started, strict=True)]
            if started and all(result.answer == Answer.UNAVAILABLE for result in started):
                raise StoreUnavailable("the state database failed for every target")
            results += started
            if trigger.source == Source.CRON:
                self._sweep(targets, started, wait)
        results += unknown
        if not results:
            reason = trigger.reason
            if trigger.wants_prune and trigger.hosts == ():
                reason = "no firing alert carries a host label (PRUNEHOOK_HOST_LABELS)"
            results.append(TargetResult(None, Answer.IGNORED, reason))
        outcome = TriggerOutcome(trigger, tuple(results), request_id)
        self._decided(outcome)
        return outcome

    def _sweep(
        self, targets: Sequence[Target], results: Sequence[TargetResult], wait: bool
    ) -> None:
        """Queue a measure of each watched target the ping did not start a run on; with
        `wait` (a function platform freezes the CPU after the answer), wait for the measures
        and for the runs they start."""
        started = {result.target for result in results if result.run_id is not None}
        measured = {t.name: t for t in targets if t.name not in started}
        try:
            queued = self.watch.sweep(measured.values())
        except StoreUnavailable as error:
            log.error("cron ping: no measure queued, the state database failed: %s", error)
            return
        for name, measure in queued.items() if wait else ():
            try:
                found = measure.result(measure_limit_s(measured[name]))
            except TimeoutError:
                continue
            if found.run_id is not None:
                self.runs.wait(found.run_id, run_limit_s(measured[name]))

    def start_watched(
        self, target: Target, verdict: Verdict, forecast: Forecast | None
    ) -> int | None:
        """A run on the watch's word (a goal missed now, or forecast to be), bounded as a
        critical start: never within critical_interval_s of the last. It prunes towards the
        verdict's goals; the run's record keeps the forecast it acted on, if it did."""
        source = Source.FORECAST if verdict.act == Act.FORECAST else Source.WATCH
        try:
            result = self.claim(target, source, critical=True, forecast=forecast)
        except StoreUnavailable as error:
            log.error("watch of %s: the state database failed: %s", target.name, error)
            return None
        log.info(
            "watch of %s: %s (%s): %s",
            target.name,
            verdict.reason,
            source,
            result.answer,
            extra=_logged(result, "watch", trigger=str(source)),
        )
        if result.run_id is None:
            return None
        self.runs.submit(target, result.run_id, Orders(aim=verdict.goals))
        return result.run_id

    def duplicate(self, trigger: Trigger, request_id: str | None = None) -> TriggerOutcome:
        """A signed delivery seen before: answered, counted and logged, never decided."""
        result = TargetResult(None, Answer.DUPLICATE, "this webhook-id was already received")
        outcome = TriggerOutcome(trigger, (result,), request_id)
        self._decided(outcome)
        return outcome

    def _decided(self, outcome: TriggerOutcome) -> None:
        trigger = outcome.trigger
        for result in outcome.results:
            log.log(
                logging.DEBUG if result.answer in ROUTINE else logging.INFO,
                "trigger %s: %s for %s",
                trigger.source,
                result.answer,
                result.target or "-",
                extra=_logged(
                    result,
                    "trigger",
                    source=trigger.source,
                    trigger=trigger.reason,
                    request_id=outcome.request_id,
                ),
            )
        tell(self.listeners.decided, outcome, log=log)

    def _start_if_due(
        self, target: Target, trigger: Trigger, force: bool, request_id: str | None
    ) -> TargetResult:
        """A sweep goes on past a target the database fails for: what started stays
        started, and the answer says which targets are left to retry."""
        critical = self.is_critical(target, trigger)
        try:
            result = self.claim(
                target, trigger.label, force=force, request_id=request_id, critical=critical
            )
        except StoreUnavailable as error:
            log.error("trigger for %s: the state database failed: %s", target.name, error)
            return TargetResult(target.name, Answer.UNAVAILABLE, UNAVAILABLE)
        if result.run_id is not None:
            self.runs.submit(target, result.run_id, Orders(request_id, confirm=result.critical))
        return result

    def is_critical(self, target: Target, trigger: Trigger) -> bool:
        """The disk of `target` is nearly full, as the trigger says (DESIGN.md, "Critical")."""
        routed = self.routes_by_host and trigger.hosts is not None
        routes = target.routes if routed else None
        return trigger.is_critical(routes, target.policy.critical_percent)

    def claim(
        self,
        target: Target,
        trigger: str,
        *,
        force: bool = False,
        request_id: str | None = None,
        critical: bool = False,
        forecast: Forecast | None = None,
    ) -> TargetResult:
        """Decide for `target` now and, when due, claim a run (its id in the result) that
        the caller must submit to `runs`. The store's compare-and-set makes the claim exclusive:
        when the state changed since it was read, it is read and decided again."""
        run: NewRun | None = None
        for _ in range(CLAIM_ATTEMPTS):
            now = self.clock()
            state = self._current_state(target, now, request_id)
            if state is None:
                continue  # changed while its clock step was corrected: look again
            decision = decide(state, now, target.policy, force, critical)
            if decision.answer != Answer.STARTED:
                return _result(target, decision)
            # built only for a start: a skip, the common answer, needs no command
            run = run or NewRun(trigger, self.command(target), os.getpid(), request_id, forecast)
            run_id = self.store.claim(
                target.name, state, run, now, target.policy.lease_s, critical=decision.critical
            )
            if run_id is not None:
                return _result(target, decision, run_id)
        # others changed the state each time it was read: they are busy with the target
        reason = "the target's state changed under every attempt to claim it; busy"
        return TargetResult(target.name, Answer.BUSY, reason)

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
        self.runs.wait(result.run_id, run_limit_s(target))
        try:
            return replace(result, run=self.store.run(result.run_id))
        except StoreUnavailable as error:
            log.error("run %s: cannot read it back: %s", result.run_id, error)
            return result

    def join_all(self, timeout: float | None = None) -> None:
        """Wait for the measures and runs this process started (tests, CLI and shutdown)."""
        self.watch.join_all(timeout)
        self.runs.join_all(timeout)


def _unknown_hosts(hosts: Sequence[str]) -> TargetResult:
    """One item for every host value that is no target: an Alertmanager group may carry
    thousands, and the answer and the log name the first few and count the rest."""
    shown = ", ".join(repr(host[:253]) for host in hosts[:UNKNOWN_SHOWN])
    if len(hosts) == 1:
        reason = f"host {shown} is no configured target"
    else:
        reason = f"{len(hosts)} hosts are no configured target: {shown}"
        if len(hosts) > UNKNOWN_SHOWN:
            reason += f" and {len(hosts) - UNKNOWN_SHOWN} more"
    return TargetResult(None, Answer.UNKNOWN_TARGET, reason, unknown_hosts=len(hosts))


def _result(target: Target, decision: Decision, run_id: int | None = None) -> TargetResult:
    return TargetResult(
        target.name,
        decision.answer,
        decision.reason,
        run_id,
        decision.next_eligible_ts,
        critical=decision.critical,
    )
