"""Notifications: to every destination (webhook.destinations), never in the way of a run.

What to tell is decided by `webhook.core.notices` (pure). This module is the I/O: the
finished-run listener reads the failure streak from the store, queues each notice and
returns (the watch's listener, `measured`, likewise); one thread per process sends them,
each destination within a timeout. Past QUEUE_SIZE waiting, a notice is dropped with a
log line. Every message is counted (`sent`, `failed`, `dropped`) by the `counted` callback
(/metrics). A destination is named by its scheme and its place in the list (`tgram #1`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

from webhook.core.notices import (
    Notice,
    NoticePolicy,
    Reason,
    failure_streak,
    measured_notices,
    notices_for,
)
from webhook.destinations import (
    AppriseDestination,
    Delivery,
    Destination,
    TelegramAPIDestination,
    telegram_url,
)

if TYPE_CHECKING:
    from webhook.config import NotifySettings
    from webhook.core.outcome import RunOutcome
    from webhook.core.targets import Target
    from webhook.store import Store
    from webhook.watch import Watched

log = logging.getLogger(__name__)
# notices waiting to be sent in one process; past that a notice is dropped (and counted)
QUEUE_SIZE = 64
# what flush() and the process's exit wait for the queue at most, past the send timeout
FLUSH_GRACE_S = 2.0

# result, reason, scheme: Metrics.notified
Counted = Callable[[str, str, str], object]


def destinations_for(settings: NotifySettings) -> list[Destination]:
    """PRUNEHOOK_NOTIFY_URLS, then Telegram's variables as a tgram:// URL (or, with an API
    server of your own, the direct request)."""
    timeout_s = settings.timeout_s
    found: list[Destination] = [AppriseDestination(url, timeout_s) for url in settings.urls]
    token, chat = settings.telegram_bot_token, settings.telegram_chat_id
    if token and chat:
        if url := telegram_url(token, chat, settings.telegram_api_base):
            found.append(AppriseDestination(url, timeout_s))
        else:
            found.append(TelegramAPIDestination(settings.telegram_api_base, token, chat))
    return found


# -- the listener and its sender ------------------------------------------------------
class Notifier:
    """The finished-run listener: decides, then sends in a thread of its own."""

    def __init__(
        self,
        destinations: Sequence[Destination],
        policy: NoticePolicy,
        store: Store | None = None,
        *,
        timeout_s: float = 10.0,
        counted: Counted | None = None,
        queue_size: int = QUEUE_SIZE,
    ):
        self.destinations = tuple(destinations)
        self.policy = policy
        self.store = store
        self.timeout_s = timeout_s
        self.counted = counted
        self.queue_size = queue_size
        self._sender = ThreadPoolExecutor(1, thread_name_prefix="prunehook-notify")
        self._queued: set[Future[None]] = set()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls,
        settings: NotifySettings,
        store: Store | None = None,
        counted: Counted | None = None,
    ) -> Notifier:
        policy = NoticePolicy(
            min_reclaim_bytes=round(settings.min_gb * 1000**3), failures=settings.failures
        )
        return cls(
            destinations_for(settings),
            policy,
            store,
            timeout_s=settings.timeout_s,
            counted=counted,
        )

    @property
    def schemes(self) -> list[str]:
        """What /status shows of the destinations: their schemes, in order."""
        return [destination.scheme for destination in self.destinations]

    # -- deciding (in the run's thread: a store read at most, then a queue put) ----------
    def __call__(self, target: Target, outcome: RunOutcome) -> None:
        if not self.destinations:
            return
        streak = 0 if outcome.ok else self._streak(target)
        for notice in notices_for(target.name, outcome, streak, self.policy):
            self.submit(notice)

    def measured(self, watched: Watched) -> None:
        """The watch's listener: a run started ahead of the forecast, a disk pruning cannot
        help (told once)."""
        if not self.destinations:
            return
        found = measured_notices(
            watched.target.name,
            watched.verdict,
            watched.forecast,
            watched.run_id,
            repeated=watched.repeated,
            now=watched.sample.ts,
        )
        for notice in found:
            self.submit(notice)

    def _streak(self, target: Target) -> int:
        """Failed runs in a row, as the store has them: the same in every worker and replica."""
        wanted = self.policy.failures
        if wanted <= 0 or self.store is None:
            return 0
        try:
            # two more than needed: a streak past N is no news, and a run may be in flight;
            # a check that pruned nothing (an unconfirmed critical start) is no prune in it
            runs = self.store.recent_runs(target.name, wanted + 2, prunes=True)
        except Exception as error:
            log.warning("notifications: cannot read the recent runs of %s: %s", target.name, error)
            return 0
        return failure_streak([run.result for run in runs])

    # -- queueing ------------------------------------------------------------------------
    def submit(self, notice: Notice) -> bool:
        """Queue a notice for every destination; False (logged and counted) when full."""
        with self._lock:
            # the one being sent and QUEUE_SIZE waiting
            full = len(self._queued) > self.queue_size
            if not full:
                future = self._sender.submit(self._send, notice)
                self._queued.add(future)
        if full:
            log.warning(
                "notification %s for %s dropped: %s are waiting to be sent",
                notice.reason,
                notice.target,
                self.queue_size,
                extra={"fields": _fields(notice, result="dropped")},
            )
            for destination in self.destinations:
                self._count("dropped", notice.reason, destination.scheme)
            return False
        future.add_done_callback(self._done)
        return True

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._queued.discard(future)
        if future.exception() is not None:
            log.error("notifications: the sender raised", exc_info=future.exception())

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every queued notice was sent or given up; False on the time limit."""
        with self._lock:
            queued = list(self._queued)
        if timeout_s is None:
            timeout_s = self.timeout_s * max(1, len(self.destinations)) + FLUSH_GRACE_S
        return not wait(queued, timeout_s).not_done

    def send_now(self, notice: Notice) -> list[Delivery]:
        """Sends `notice` to every destination from this thread, each one's delivery in
        order, counted but not logged: `prunehook notify --test` prints each one."""
        return [self._deliver(destination, notice) for destination in self.destinations]

    def _send(self, notice: Notice) -> None:
        for place, destination in enumerate(self.destinations, 1):
            started = time.monotonic()
            delivery = self._deliver(destination, notice)
            fields = _fields(
                notice,
                result="sent" if delivery.ok else "failed",
                destination=f"{destination.scheme} #{place}",
                detail=delivery.detail or None,
                duration_s=round(time.monotonic() - started, 3),
            )
            told = "sent" if delivery.ok else f"failed: {delivery.detail or 'failed'}"
            log.log(
                logging.INFO if delivery.ok else logging.WARNING,
                "notification %s for %s to %s #%s %s",
                notice.reason,
                notice.target,
                destination.scheme,
                place,
                told,
                extra={"fields": fields},
            )

    def _deliver(self, destination: Destination, notice: Notice) -> Delivery:
        try:
            delivery = destination.send(notice, self.timeout_s)
        except Exception as error:
            delivery = Delivery(False, type(error).__name__)
        self._count("sent" if delivery.ok else "failed", notice.reason, destination.scheme)
        return delivery

    def _count(self, result: str, reason: Reason, scheme: str) -> None:
        if self.counted is None:
            return
        try:
            self.counted(result, str(reason), scheme)
        except Exception:
            log.exception("notifications: counting failed")


def _fields(notice: Notice, **more: object) -> dict[str, object]:
    return {"event": "notification", "target": notice.target, "reason": str(notice.reason), **more}
