"""Where notifications go: the destinations of PRUNEHOOK_NOTIFY_URLS (through apprise) and
of the Telegram variables, how each is sent to, and the startup check of their URLs.

Destination URLs carry tokens: they are never logged nor shown; a destination is named by
its scheme, and apprise's own log lines have every part of them masked.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from webhook.logs import SecretMask

if TYPE_CHECKING:
    import apprise

    from webhook.core.notices import Notice

TELEGRAM_API = "https://api.telegram.org"
# a Telegram chat: a number (negative for groups) or a public name, as apprise's tgram:// takes it
TELEGRAM_CHAT = re.compile(r"^(-?[0-9]{1,32}|@?[a-z_-][a-z0-9_-]+)$", re.IGNORECASE)
_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*)://", re.IGNORECASE)
# a piece of a URL this long or longer is masked wherever apprise's own log lines show it
_MIN_SECRET_CHARS = 4


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
