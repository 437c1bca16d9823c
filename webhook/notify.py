"""Notifications through apprise: to every destination of PRUNEHOOK_NOTIFY_URLS (and the
Telegram variables), never in the way of a run.

What to tell is decided by `webhook.core.notices` (pure). This module is the I/O: the
finished-run listener reads the failure streak from the store, queues each notice and
returns (the watch's listener, `measured`, likewise); one thread per process sends them,
each destination within a timeout. Past QUEUE_SIZE waiting, a notice is dropped with a
log line. Every message is counted (`sent`, `failed`, `dropped`) by the `counted` callback
(/metrics). Destination URLs carry tokens: they are never logged nor shown; a destination
is named by its scheme and its place in the list (`tgram #1`), and apprise's own log lines
have every part of them masked.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from webhook.core.notices import (
    Notice,
    NoticePolicy,
    Reason,
    failure_streak,
    measured_notices,
    notices_for,
)
from webhook.logs import SecretMask

if TYPE_CHECKING:
    import apprise

    from webhook.config import NotifySettings
    from webhook.core.outcome import RunOutcome
    from webhook.core.targets import Target
    from webhook.store import Store
    from webhook.watch import Watched

log = logging.getLogger(__name__)
TELEGRAM_API = "https://api.telegram.org"
# notices waiting to be sent in one process; past that a notice is dropped (and counted)
QUEUE_SIZE = 64
# what flush() and the process's exit wait for the queue at most, past the send timeout
FLUSH_GRACE_S = 2.0
# a Telegram chat: a number (negative for groups) or a public name, as apprise's tgram:// takes it
TELEGRAM_CHAT = re.compile(r"^(-?[0-9]{1,32}|@?[a-z_-][a-z0-9_-]+)$", re.IGNORECASE)
_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*)://", re.IGNORECASE)
# a piece of a URL this long or longer is masked wherever apprise's own log lines show it
_MIN_SECRET_CHARS = 4

# result, reason, scheme: Metrics.notified
Counted = Callable[[str, str, str], object]


def scheme_of(url: str) -> str:
    found = _SCHEME.match(url)
    return found.group(1).lower() if found else ""


def telegram_url(bot_token: str, chat_id: str, api_base: str) -> str | None:
    """The Telegram variables as the apprise URL they stand for; None with an API server of
    your own (PRUNEHOOK_TELEGRAM_API_BASE), which apprise's tgram:// cannot call."""
    if api_base.rstrip("/") != TELEGRAM_API:
        return None
    return f"tgram://{bot_token}/{urllib.parse.quote(chat_id, safe='@-')}"


# -- secrets out of apprise's log lines ----------------------------------------------
# apprise logs a URL it cannot parse whole, and at DEBUG a socket error with the request's
# path (where Telegram's bot token is), as urllib3 under requests (which apprise sends
# with) logs each request's, retry's and redirect's: every configured URL, and each
# longer piece of one, is masked in their records
_URL_SECRETS = SecretMask(tracebacks=False)
_URL_SECRETS.guard(
    (
        "apprise",
        "urllib3.connection",
        "urllib3.connectionpool",
        "urllib3.util.retry",
        "urllib3.poolmanager",
    )
)
# apprise narrates each send at INFO; the notification line below says what happened
logging.getLogger("apprise").setLevel(logging.WARNING)


def _hide(urls: Iterable[str]) -> None:
    found: set[str] = set()
    for url in urls:
        rest = url.split("://", 1)[-1]
        found.update({url, rest, urllib.parse.unquote(url), urllib.parse.unquote(rest)})
        where, _, query = rest.partition("?")
        # the user, password, host and path; of the query, the values (tokens sit there too)
        values = [value for _, value in urllib.parse.parse_qsl(query, keep_blank_values=True)]
        for text in [where, urllib.parse.unquote(where), *values]:
            found.update(re.split(r"[/:@#,\s]+", text))
    _URL_SECRETS.hide(piece for piece in found if len(piece) >= _MIN_SECRET_CHARS)


def _asset(timeout_s: float) -> apprise.AppriseAsset:
    # imported where a URL is used: most services send no notification, and it loads slowly
    import apprise

    return apprise.AppriseAsset(
        app_id="prunehook",
        app_desc="prunehook: BuildKit build cache pruning",
        service_timeout=timeout_s,
        storage_mode="memory",  # nothing written to disk
    )


def url_problems(urls: Sequence[str]) -> list[str]:
    """What is wrong with each URL apprise cannot use, naming it by its place and scheme
    (never the URL: it carries a token)."""
    if not urls:
        return []
    _hide(urls)
    import apprise

    problems: list[str] = []
    asset = _asset(10.0)
    for place, url in enumerate(urls, 1):
        scheme = scheme_of(url)
        if not scheme:
            problems.append(f"URL {place} has no scheme (e.g. json://, tgram://)")
        elif apprise.Apprise.instantiate(url, asset=asset) is None:
            problems.append(
                f"URL {place} ({scheme}://) is not one apprise can use: check it against the "
                "service's page in apprise's documentation"
            )
    return problems


def config_errors(
    urls: Sequence[str], telegram_bot_token: str, telegram_chat_id: str, telegram_api_base: str
) -> dict[str, list[str]]:
    """Refuse what apprise cannot use: notifications are how a failing prune is noticed, so a
    typo must not silence them. Problems name a URL's place and scheme, never the URL."""
    errors: dict[str, list[str]] = {}
    problems = url_problems(urls)
    if problems:
        errors["PRUNEHOOK_NOTIFY_URLS"] = problems
    if not (telegram_bot_token and telegram_chat_id):
        return errors
    if not TELEGRAM_CHAT.match(telegram_chat_id):
        errors["PRUNEHOOK_TELEGRAM_CHAT_ID"] = ["is not a chat id (-100123456789) or @name"]
    elif (url := telegram_url(telegram_bot_token, telegram_chat_id, telegram_api_base)) and (
        url_problems([url])
    ):
        errors["PRUNEHOOK_TELEGRAM_BOT_TOKEN"] = [
            "is not a bot token as BotFather gives them (123456789:letters-and-digits)"
        ]
    return errors


# -- destinations --------------------------------------------------------------------
@dataclass(frozen=True)
class Delivery:
    ok: bool
    # why it failed, safe to log (a status, an error kind; never the URL)
    detail: str = ""


class Destination(Protocol):
    scheme: str

    def send(self, notice: Notice, timeout_s: float) -> Delivery: ...


class AppriseDestination:
    """One apprise URL."""

    def __init__(self, url: str, timeout_s: float):
        _hide([url])
        import apprise

        self.scheme = scheme_of(url)
        self._apprise = apprise.Apprise(asset=_asset(timeout_s))
        if not self._apprise.add(url):
            raise ValueError(f"apprise cannot use this {self.scheme}:// URL")

    def send(self, notice: Notice, timeout_s: float) -> Delivery:
        import apprise

        result = self._apprise.notify(
            body=notice.body,
            title=notice.title,
            notify_type=apprise.NotifyType(str(notice.severity)),
            body_format=apprise.NotifyFormat.TEXT,
            timeout=timeout_s,
        )
        if result:
            return Delivery(True)
        status = getattr(result, "status", None)
        return Delivery(False, getattr(status, "name", "failure").lower())


class TelegramAPIDestination:
    """Telegram through a Bot API server of your own (PRUNEHOOK_TELEGRAM_API_BASE): apprise's
    tgram:// always calls api.telegram.org, so this one request is sent here."""

    scheme = "tgram"

    def __init__(self, api_base: str, bot_token: str, chat_id: str):
        self._url = f"{api_base.rstrip('/')}/bot{bot_token}/sendMessage"
        self._chat_id = chat_id

    def send(self, notice: Notice, timeout_s: float) -> Delivery:
        body = json.dumps({"chat_id": self._chat_id, "text": f"{notice.title}\n{notice.body}"})
        # the scheme is checked at startup: PRUNEHOOK_TELEGRAM_API_BASE is http(s) only
        request = urllib.request.Request(  # noqa: S310
            self._url, data=body.encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
                return Delivery(200 <= response.status < 300, f"HTTP {response.status}")
        except urllib.error.HTTPError as error:
            # the URL carries the bot token: the status only, never the URL
            return Delivery(False, f"HTTP {error.code}")
        except OSError as error:  # URLError too: its reason is what went wrong
            reason = getattr(error, "reason", error)
            return Delivery(False, type(reason).__name__)


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
