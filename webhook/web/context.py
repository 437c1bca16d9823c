"""The one typed way from a Flask request (or CLI command) to prunehook's parts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import Flask, current_app

if TYPE_CHECKING:
    from webhook.config import Settings
    from webhook.metrics import Metrics
    from webhook.notify import Notifier
    from webhook.service import PruneService

EXTENSION = "prunehook"


@dataclass(frozen=True)
class Prunehook:
    settings: Settings
    service: PruneService
    metrics: Metrics
    # configuration problems that fell back to a default (config.load_settings)
    warnings: tuple[str, ...]
    notifier: Notifier

    def join_all(self, timeout: float | None = None) -> None:
        """Wait for the runs this process started (tests, CLI and shutdown), then for the
        notifications they queued."""
        self.service.join_all(timeout)
        self.notifier.flush(timeout)


def prunehook(app: Flask | None = None) -> Prunehook:
    """The app's parts: of `app`, or of the app serving this request or command."""
    extension: Prunehook = (app or current_app).extensions[EXTENSION]
    return extension
