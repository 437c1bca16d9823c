"""`prunehook`: the operator's command (the console script)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import click
from flask.cli import ScriptInfo

from webhook.logs import PLAIN, configure_logging

if TYPE_CHECKING:
    from flask import Flask

# by name: the module that holds each command, imported when it is asked for, so
# `prunehook serve` starts gunicorn without loading the others
_WHERE = {
    "serve": "webhook.cli.serve:serve_command",
    "check": "webhook.cli.check:check_command",
    "notify": "webhook.cli.check:notify_command",
    "prune": "webhook.cli.fleet:prune_command",
    "status": "webhook.cli.fleet:status_command",
    "targets": "webhook.cli.fleet:targets_command",
    "hosts": "webhook.cli.hosts:hosts_group",
    "state": "webhook.cli.state:state_group",
}


class _Commands(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(_WHERE)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in _WHERE:
            return None
        import importlib

        module, _, attribute = _WHERE[name].partition(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command


def _create_app() -> Flask:
    from webhook import create_app

    return create_app()


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
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
    ctx.obj = ScriptInfo(create_app=_create_app, set_debug_flag=False)
