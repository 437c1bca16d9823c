"""`serve`: gunicorn with the shipped settings (webhook/gunicorn_settings.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

SETTINGS = Path(__file__).resolve().parent.parent / "gunicorn_settings.py"


@click.command(
    "serve",
    short_help="Serve the hooks, /status and /metrics (gunicorn).",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": False},
)
@click.option(
    "--bind",
    metavar="ADDRESS",
    help="Where to listen, e.g. 0.0.0.0:8000. Default: GUNICORN_BIND, else 127.0.0.1:$PORT (8000).",
)
@click.option(
    "--workers",
    type=click.IntRange(1),
    help="Worker processes. Default: WEB_CONCURRENCY, else 2.",
)
@click.argument("gunicorn_options", nargs=-1, type=click.UNPROCESSED)
def serve_command(bind: str | None, workers: int | None, gunicorn_options: tuple[str, ...]) -> None:
    """Serve the hooks, /status and /metrics with gunicorn and the shipped settings.

    The settings are checked before gunicorn binds: a configuration error stops it at once,
    naming the variable. Worker timeouts cover the longest run, so a graceful stop (SIGTERM)
    lets a prune finish. SIGHUP starts new workers on the code, .env and the targets file as
    they are now (the process's own environment stays as it was at start): run `prunehook
    targets` first, as a reload with a bad targets file stops prunehook as a start would.
    Any further option goes to gunicorn as is (after --, e.g. `-- --threads 4`). Put a
    buffering proxy in front (contrib/nginx/prunehook.conf).
    """
    from webhook.config import ConfigError, server_counts

    # gunicorn reads WEB_CONCURRENCY as it is imported, before the settings file checks it,
    # and a count that is no number stops it with a traceback
    try:
        server_counts()
    except ConfigError as error:
        click.echo(str(error), err=True)
        sys.exit(2)
    argv = [sys.executable, "-m", "gunicorn", "--config", str(SETTINGS)]
    if bind:
        argv += ["--bind", bind]
    if workers:
        argv += ["--workers", str(workers)]
    argv += [*gunicorn_options, "webhook.wsgi:app"]
    sys.stdout.flush()
    os.execv(sys.executable, argv)  # noqa: S606 (gunicorn becomes this process: signals reach it)
