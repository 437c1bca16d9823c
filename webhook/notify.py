"""Telegram notification of a large reclaim. Best effort: it never fails a run."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from webhook.config import Settings
    from webhook.core.outcome import RunOutcome
    from webhook.core.targets import Target

log = logging.getLogger(__name__)
TIMEOUT_S = 10


def should_notify(outcome: RunOutcome, notify_min_gb: float) -> bool:
    """Pure: notify on a successful run that reclaimed at least the threshold (0 = never)."""
    if notify_min_gb <= 0 or not outcome.ok or outcome.reclaimed_bytes is None:
        return False
    return outcome.reclaimed_bytes >= notify_min_gb * 1000**3


def message_for(target: str, outcome: RunOutcome) -> str:
    return (
        f"prunehook: pruned BuildKit build cache on {target}, "
        f"reclaimed {outcome.reclaimed} in {outcome.duration_s:.1f}s"
    )


class TelegramNotifier:
    def __init__(self, settings: Settings):
        self.settings = settings

    def __call__(self, target: Target, outcome: RunOutcome) -> bool:
        """Send when due; returns whether a message was delivered. Never raises."""
        settings = self.settings
        if not settings.notify_enabled or not should_notify(outcome, settings.notify_min_gb):
            return False
        url = f"{settings.telegram_api_base}/bot{settings.telegram_bot_token}/sendMessage"
        body = json.dumps(
            {"chat_id": settings.telegram_chat_id, "text": message_for(target.name, outcome)}
        )
        # the scheme is checked at startup: PRUNEHOOK_TELEGRAM_API_BASE is http(s) only
        request = urllib.request.Request(  # noqa: S310
            url, data=body.encode(), headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
                return 200 <= response.status < 300
        except urllib.error.HTTPError as error:
            # the URL carries the bot token: log the status only, never the URL
            log.warning("telegram notification failed: HTTP %s", error.code)
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            log.warning("telegram notification failed: %s", type(reason).__name__)
        return False
