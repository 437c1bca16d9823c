"""The operator's commands by name, for `prunehook` (webhook.cli.main) and `flask --app wsgi`
(the app's `cli`) alike. A command's module is imported only when it is looked up: a
server, and `prunehook serve`, load none of webhook.cli's command modules."""

from __future__ import annotations

from pkgutil import resolve_name

import click
from flask.cli import AppGroup

# each command by name: the module and attribute that hold it
WHERE = {
    "check": "webhook.cli.check:check_command",
    "notify": "webhook.cli.check:notify_command",
    "prune": "webhook.cli.fleet:prune_command",
    "status": "webhook.cli.fleet:status_command",
    "targets": "webhook.cli.fleet:targets_command",
    "hosts": "webhook.cli.hosts:hosts_group",
    "state": "webhook.cli.state:state_group",
}


class Commands(AppGroup):
    """The group's own commands, then those of WHERE, each imported when looked up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *WHERE]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        where = WHERE.get(name)
        return super().get_command(ctx, name) or (resolve_name(where) if where else None)
