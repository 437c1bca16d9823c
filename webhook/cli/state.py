"""`state copy`: the SQLite state into PostgreSQL, before moving to replicas."""

from __future__ import annotations

import os
import sys
from contextlib import closing

import click
from flask.cli import with_appcontext
from marshmallow import ValidationError

from webhook.config import POSTGRES_URL, ConfigError
from webhook.store import StateConflict, StoreUnavailable
from webhook.web.context import prunehook


@click.group("state", short_help="Copy the state into PostgreSQL.")
def state_group() -> None:
    """Move the state (each target's row, run history, delivery ids) between databases."""


# where `state copy` reads its destination: argv is shown by ps and kept in shell history
COPY_URL_VARIABLE = "PRUNEHOOK_COPY_TO_URL"


def _copy_destination(option: str | None) -> tuple[str, str]:
    """The destination's URL and where it was given: PRUNEHOOK_COPY_TO_URL, or --to when that
    carries no password. Never repeats the URL."""
    from webhook.store.postgres import url_passwords

    # COPY_URL_VARIABLE written out: the docs' tests find the variables read by their names
    variable = os.environ.get("PRUNEHOOK_COPY_TO_URL", "").strip()
    if variable and option:
        raise click.UsageError(f"give the destination once: {COPY_URL_VARIABLE} or --to")
    if variable:
        return variable, COPY_URL_VARIABLE
    if not option:
        raise click.UsageError(f"set {COPY_URL_VARIABLE} to the destination's postgresql:// URL")
    if url_passwords(option):
        raise click.UsageError(
            "--to carries a password, which any user sees in ps and the shell's history keeps:"
            f" set {COPY_URL_VARIABLE} to the URL instead (or leave the password out of it and"
            " give it in PGPASSWORD or ~/.pgpass); nothing was copied"
        )
    return option, "--to"


@state_group.command("copy")
@with_appcontext
@click.option(
    "--to",
    "url",
    metavar="URL",
    help=f"postgresql://user@host/db, without a password (PGPASSWORD or ~/.pgpass give it)."
    f" Better: the URL in {COPY_URL_VARIABLE}, out of ps and shell history.",
)
def state_copy_command(url: str | None) -> None:
    """Copy the SQLite state into PostgreSQL, before moving to replicas.

    The destination is PRUNEHOOK_COPY_TO_URL (postgresql://user:password@host/db): an empty
    database, or one without these targets. The last run of each target comes along (so the
    move does not prune at once), with its history and the recent signed delivery ids.
    Refuses, copying nothing, when the database already keeps state for one of these
    targets. Run it with prunehook stopped.
    """
    from webhook.store.postgres import PostgresStore
    from webhook.store.sqlite import SQLiteStore

    hook = prunehook()
    url, given_in = _copy_destination(url)
    try:
        POSTGRES_URL(url)
    except ValidationError as error:
        raise click.BadParameter(str(error), param_hint=given_in) from None
    if hook.settings.server.database_url:
        raise click.UsageError("the state is in PostgreSQL already (PRUNEHOOK_DATABASE_URL)")
    try:
        destination = PostgresStore(url, variable=given_in)
    except ConfigError as error:
        click.echo(f"{error}\nnothing was copied", err=True)
        sys.exit(1)
    source = hook.settings.server.db_path
    with closing(destination):
        try:
            with closing(SQLiteStore(source)) as kept:
                dump = kept.dump()
        except StoreUnavailable as error:
            click.echo(f"cannot read {source}: {error}; nothing was copied", err=True)
            sys.exit(1)
        if not dump.runs:
            # run from a folder other than the service's (its .env, PRUNEHOOK_DB_PATH, the
            # instance folder), this reads a new, empty state: the move would prune at once
            click.echo(
                f"refused: {source} keeps no run; run this where prunehook runs, with its"
                " .env (PRUNEHOOK_DB_PATH names its state); nothing was copied",
                err=True,
            )
            sys.exit(1)
        try:
            destination.load(dump)
        except StateConflict as conflict:
            click.echo(f"refused: the destination {conflict}; nothing was copied", err=True)
            sys.exit(1)
        except StoreUnavailable as error:
            click.echo(f"cannot reach the destination: {error}", err=True)
            sys.exit(1)
    click.echo(
        f"copied {len(dump.targets)} target(s), {len(dump.runs)} run(s) and"
        f" {len(dump.deliveries)} delivery id(s) from {source}"
    )
