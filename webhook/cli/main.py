"""`prunehook`: the operator's command (the console script)."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

import click
from flask.cli import ScriptInfo

from webhook.cli.serve import serve_command
from webhook.commands import Commands
from webhook.logs import PLAIN, configure_logging

if TYPE_CHECKING:
    from flask import Flask


def _create_app() -> Flask:
    """The app the commands work with; a configuration error is said, not a traceback."""
    from webhook import create_app
    from webhook.config import ConfigError

    try:
        return create_app()
    except ConfigError as error:
        click.echo(str(error), err=True)
        sys.exit(2)


# serve is prunehook's own: the only command that builds no app (gunicorn's workers do)
@click.group(
    cls=Commands,
    commands=[serve_command],
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="prunehook", prog_name="prunehook")
@click.option(
    "-v", "--verbose", is_flag=True, help="Log each step on stderr (default: warnings only)."
)
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Prunes BuildKit's build cache on build hosts over SSH, when a disk watchdog or a
    cron ping asks, or before a watched disk fills.

    Configured by PRUNEHOOK_* variables (or .env) and a targets file. Start with
    `prunehook hosts add`, then `prunehook check`; serve with `prunehook serve`.
    """
    configure_logging(PLAIN, logging.INFO if verbose else logging.WARNING)
    # paramiko's transport thread logs a peer that is no SSH server with a traceback; the
    # command says what failed in one line
    logging.getLogger("paramiko").setLevel(logging.DEBUG if verbose else logging.CRITICAL)
    ctx.obj = ScriptInfo(create_app=_create_app, set_debug_flag=False)
