"""The app factory: settings, the store, the runner and the service, wired to Flask."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from flask import Flask

from webhook import cli
from webhook.config import Settings, load_settings
from webhook.core.outcome import Execution
from webhook.core.targets import Target
from webhook.logs import configure_logging
from webhook.notify import TelegramNotifier
from webhook.pruner import Pruner
from webhook.remote.ssh import SSHRunner
from webhook.store.sqlite import Store, StoreUnavailable
from webhook.web import errors, hooks, metrics, openapi, status
from webhook.web.hook_token import ensure_token
from webhook.web.metrics import Metrics

log = logging.getLogger("webhook")


def _resolve_settings(app: Flask, settings: Settings | None) -> Settings:
    if settings is None:
        settings, warnings = load_settings(dotenv=Path.cwd() / ".env")
        app.extensions["prunehook.warnings"] = warnings
        for warning in warnings:
            log.warning("%s", warning)
    if not settings.db_path:
        settings = dataclasses.replace(
            settings, db_path=str(Path(app.instance_path) / "prunehook.sqlite3")
        )
    if not settings.token:
        token, path = ensure_token(app.instance_path)
        log.warning("PRUNEHOOK_TOKEN is not set: the hooks require the token kept in %s", path)
        settings = dataclasses.replace(settings, token=token)
    return settings


def create_app(
    settings: Settings | None = None,
    *,
    run_command: Callable[[Target, str], Execution] | None = None,
    clock: Callable[[], float] = time.time,
    instance_path: str | None = None,
) -> Flask:
    """The app. Without `settings`, they are read from the environment and `.env`."""
    configure_logging()
    instance_path = instance_path or os.environ.get("PRUNEHOOK_INSTANCE_PATH") or None
    app = Flask(__name__, instance_path=instance_path, instance_relative_config=True)
    settings = _resolve_settings(app, settings)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    store = Store(settings.db_path)
    try:
        store.init_schema()
        if settings.target is not None:
            adopted = store.adopt_legacy_state(settings.target, settings.legacy_state_key)
            if adopted:
                log.warning("state of %s is now kept as target %s", adopted, settings.target)
    except StoreUnavailable as error:
        # keep serving: hooks answer 503 (senders retry) and each use tries the schema again
        log.error("state database %s unavailable at start: %s", settings.db_path, error)
    finally:
        store.close()  # never hand a connection across a fork (gunicorn --preload)
    pruner = Pruner(settings, store, run_command or SSHRunner().run, clock=clock)
    app.extensions["prunehook"] = pruner
    app.extensions["prunehook.metrics"] = meters = Metrics(lambda: status.current_gauges(pruner))
    pruner.after_run += [TelegramNotifier(settings), meters.finished]
    errors.init_app(app)
    app.register_blueprint(hooks.bp)
    app.register_blueprint(status.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(metrics.bp)
    cli.init_app(app)
    return app
