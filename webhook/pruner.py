"""The service: claim a run for a trigger, run the prune in the background, record it.

I/O is injected (the store, the command runner, the notifier, the clock), so the
service is tested with a fake runner and, end to end, with the real SSH one.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from webhook.config import Settings
from webhook.core.command import build_prune_command
from webhook.core.decision import Action, Decision, TargetState, decide
from webhook.core.outcome import Execution, RunOutcome, summarize
from webhook.core.targets import Target
from webhook.store.sqlite import Store, StoreUnavailable

log = logging.getLogger(__name__)

# runs a command on a target: the SSH runner, or a fake in service-level tests
RunCommand = Callable[[Target, str], Execution]
# told of every finished run: the notifier, the metrics
AfterRun = Callable[[str, RunOutcome], object]
FINISH_ATTEMPTS = 10
FINISH_BACKOFF_S = 1.0


@dataclass(frozen=True)
class TriggerResult:
    decision: Decision
    run_id: int | None = None
    # the run's history row, when the caller waited for it
    run: dict[str, Any] | None = None


class Pruner:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        run_command: RunCommand,
        after_run: Sequence[AfterRun] = (),
        clock: Callable[[], float] = time.time,
    ):
        self.settings = settings
        self.store = store
        self.run_command = run_command
        self.after_run = list(after_run)
        self.clock = clock
        self._threads: dict[int, threading.Thread] = {}
        self._lock = threading.Lock()
        # derived from the (frozen) settings once, not on every trigger of an alert storm
        self._target = settings.target
        self._policy = settings.policy
        self._lease_s = settings.lease_s

    @cached_property
    def command(self) -> str:
        return build_prune_command(self.settings.until, self.settings.prune_all)

    @property
    def wait_limit_s(self) -> float:
        """How long a caller may wait for a run: connecting, the prune, and recording it."""
        return self.settings.timeout_s + 3 * self.settings.connect_timeout_s + 5

    def trigger(
        self,
        source: str,
        *,
        force: bool = False,
        wait: bool = False,
        request_id: str | None = None,
    ) -> TriggerResult:
        """Decide and, when due, start a prune; with `wait`, return after it finished."""
        target = self._target
        if target is None or not self._policy.enabled:
            return TriggerResult(decide(TargetState(), self.clock(), self._policy))
        claim = self.store.claim(
            target,
            self.clock(),
            self._policy,
            trigger=source,
            command=self.command,
            lease_s=self._lease_s,
            force=force,
            worker_pid=os.getpid(),
            request_id=request_id,
        )
        if claim.clock_step is not None:
            log.warning(
                "stored times were %.0f s ahead of the clock: it was stepped back; capped at now",
                claim.clock_step.ahead_s,
                extra={
                    "fields": {
                        "event": "clock_step",
                        "target": target,
                        "ahead_s": round(claim.clock_step.ahead_s, 3),
                        "request_id": request_id,
                    }
                },
            )
        if claim.decision.action != Action.STARTED or claim.run_id is None:
            return TriggerResult(claim.decision)
        thread = self._start(claim.run_id, request_id)
        if not wait:
            return TriggerResult(claim.decision, claim.run_id)
        thread.join(self.wait_limit_s)
        return TriggerResult(claim.decision, claim.run_id, self.store.run(claim.run_id))

    def _start(self, run_id: int, request_id: str | None) -> threading.Thread:
        # not a daemon: on a graceful stop the worker waits for the prune to finish and record
        thread = threading.Thread(
            target=self.execute, args=(run_id, request_id), name=f"prune-{run_id}", daemon=False
        )
        with self._lock:
            self._threads = {k: t for k, t in self._threads.items() if t.is_alive()}
            self._threads[run_id] = thread
        thread.start()
        return thread

    def join_all(self, timeout: float | None = None) -> None:
        """Wait for the runs this process started (tests, CLI and shutdown)."""
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(timeout)

    def execute(self, run_id: int, request_id: str | None = None) -> RunOutcome:
        """Run the claimed prune, record its outcome, notify. Never raises."""
        target = self.settings.target
        assert target is not None
        try:
            assert self.settings.env_target is not None
            execution = self.run_command(self.settings.env_target, self.command)
        except Exception as error:
            log.exception("run %s: the command runner raised", run_id)
            execution = Execution(None, "", "", 0.0, "internal", f"{type(error).__name__}")
        outcome = summarize(execution)
        self._record(target, run_id, outcome)
        log.info(
            "run %s %s",
            run_id,
            "ok" if outcome.ok else f"failed: {outcome.error_kind}",
            extra={
                "fields": {
                    "event": "run_finished",
                    "run_id": run_id,
                    "request_id": request_id,
                    "target": target,
                    "result": "ok" if outcome.ok else "failed",
                    "rc": outcome.rc,
                    "reclaimed": outcome.reclaimed,
                    "reclaimed_bytes": outcome.reclaimed_bytes,
                    "error_kind": outcome.error_kind,
                    "error": outcome.error,
                    "duration_s": outcome.duration_s,
                }
            },
        )
        for listener in self.after_run:
            try:
                listener(target, outcome)
            except Exception:
                log.exception("run %s: %r failed", run_id, listener)
        return outcome

    def _record(self, target: str, run_id: int, outcome: RunOutcome) -> None:
        for attempt in range(1, FINISH_ATTEMPTS + 1):
            try:
                if not self.store.finish(target, run_id, outcome, self.clock()):
                    log.warning(
                        "run %s finished after its lease expired; a newer run owns the target",
                        run_id,
                    )
                return
            except StoreUnavailable as error:
                log.error(
                    "run %s: cannot record the outcome (attempt %s): %s", run_id, attempt, error
                )
                time.sleep(FINISH_BACKOFF_S * attempt)
        log.error("run %s: outcome not recorded; its lease will expire and mark it lost", run_id)
