"""The app factory: settings, the store, the runner and the service, wired to Flask."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from flask import Flask

from webhook.commands import Commands
from webhook.config import DOTENV, Settings, load_settings, server_counts
from webhook.logs import configure_logging, use_level
from webhook.metrics import Metrics
from webhook.notify import Notifier
from webhook.remote.session import Execute
from webhook.remote.ssh import SSHRunner
from webhook.service import Listeners, PruneService
from webhook.store import Store, StoreUnavailable
from webhook.store.sqlite import SQLiteStore
from webhook.web import answers, errors, health, hooks, metrics, openapi, status
from webhook.web.context import EXTENSION, Prunehook
from webhook.web.hook_token import check_token, ensure_token

log = logging.getLogger("webhook")


def _completed(app: Flask, settings: Settings) -> Settings:
    """`settings` with the instance folder's defaults: the SQLite file, and the hook token
    kept there when none is set."""
    server, auth = settings.server, settings.auth
    if not server.db_path:
        db_path = str(Path(app.instance_path) / "prunehook.sqlite3")
        server = dataclasses.replace(server, db_path=db_path)
    if _keeps_token(settings):
        token, path, made = ensure_token(app.instance_path)
        # said loudly once, when made; every command and start after would repeat it
        log.log(
            logging.WARNING if made else logging.INFO,
            "PRUNEHOOK_TOKEN is not set: the hooks require the token kept in %s",
            path,
        )
        auth = dataclasses.replace(auth, token=token)
    return dataclasses.replace(settings, server=server, auth=auth)


def _keeps_token(settings: Settings) -> bool:
    """Whether the hooks take the token kept in the instance folder: none is set (replicas
    would each make their own: with a database URL, signatures alone will do)."""
    auth, server = settings.auth, settings.server
    return not auth.token and not (server.database_url and auth.hmac_keys)


def check_instance(settings: Settings) -> None:
    """Raises the ConfigError create_app would about the instance folder and the hook token
    kept there, without making the token (gunicorn's master, before it forks)."""
    if _keeps_token(settings):
        check_token(_flask(None).instance_path)


def _flask(instance_path: str | None) -> Flask:
    """The Flask app, its instance folder `instance_path`, else PRUNEHOOK_INSTANCE_PATH, else
    Flask's default."""
    instance_path = instance_path or os.environ.get("PRUNEHOOK_INSTANCE_PATH") or None
    return Flask(__name__, instance_path=instance_path, instance_relative_config=True)


def _prepare(store: Store, settings: Settings) -> None:
    """Migrate the schema and carry a state row keyed the old way over to its target name."""
    try:
        store.ensure_schema()
        target = settings.targets.env_target
        if target is not None and not settings.targets.targets_file:
            # state files before target names keyed its row `user@host:port`
            adopted = store.adopt_legacy_state(target.name, str(target.ssh))
            if adopted:
                log.warning("state of %s is now kept as target %s", adopted, target.name)
    except StoreUnavailable as error:
        # keep serving: hooks answer 503 (senders retry) and each use tries the schema again
        where = "PostgreSQL" if settings.server.database_url else settings.server.db_path
        log.error("state database %s unavailable at start: %s", where, error)
    finally:
        store.close()  # never hand a connection across a fork (gunicorn --preload)


def _state(settings: Settings, clock: Callable[[], float]) -> tuple[Store, Callable[[], float]]:
    """The store, and the clock decisions use: under PostgreSQL, the database's, which every
    replica shares."""
    if not settings.server.database_url:
        return SQLiteStore(settings.server.db_path), clock
    from webhook.store.postgres import DatabaseClock, PostgresStore

    # a connection for each request thread, and two for the prunes' records
    (threads,) = server_counts("GUNICORN_THREADS")
    store = PostgresStore(settings.server.database_url, max_connections=threads + 2)
    return store, DatabaseClock(store, local=clock)


def create_app(
    settings: Settings | None = None,
    *,
    warnings: Sequence[str] = (),
    execute: Execute | None = None,
    clock: Callable[[], float] = time.time,
    instance_path: str | None = None,
) -> Flask:
    """The app. Without `settings`, they and their `warnings` are read from the environment
    and `.env`."""
    configure_logging()
    if settings is None:
        settings, warnings = load_settings(DOTENV)
    use_level(settings.server.log_level)
    for warning in warnings:
        log.warning("%s", warning)
    app = _flask(instance_path)
    settings = _completed(app, settings)
    app.config["MAX_CONTENT_LENGTH"] = settings.server.max_body_bytes
    store, clock = _state(settings, clock)
    _prepare(store, settings)
    listeners = Listeners()
    server, targets = settings.server, settings.targets
    runner = SSHRunner()
    service = PruneService(
        targets.fleet,
        store,
        execute or runner.execute,
        # a run's probes and stages share one SSH connection; a given execute (tests)
        # is called once per command
        open_session=None if execute else runner.session,
        enabled=server.enabled,
        routes_by_host=targets.routes_by_host,
        max_parallel=server.max_parallel,
        clock=clock,
        listeners=listeners,
    )
    meters = Metrics(service)
    listeners.decided.append(meters.decided)
    listeners.measured.append(meters.measured)
    notifier = Notifier.from_settings(settings.notify, store, counted=meters.notified)
    listeners.finished += [notifier, meters.finished]
    listeners.measured.append(notifier.measured)
    app.extensions[EXTENSION] = Prunehook(settings, service, meters, tuple(warnings), notifier)
    answers.init_app(app)
    errors.init_app(app)
    for module in (hooks, status, health, openapi, metrics):
        app.register_blueprint(module.bp)
    app.cli = Commands(app.name)
    return app
