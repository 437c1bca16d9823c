"""The operator's commands: `prunehook ...` (main.py), and the same under
`flask --app wsgi ...`. Each module holds one job's commands; shown.py says what they
print to people. A command's module is imported only when it runs: a server, and
`prunehook serve`, load none of them."""

from __future__ import annotations

import importlib

import click

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


def command(name: str) -> click.Command | None:
    """The command called `name`, imported now; None for no such command."""
    where = WHERE.get(name)
    if where is None:
        return None
    module, _, attribute = where.partition(":")
    found: click.Command = getattr(importlib.import_module(module), attribute)
    return found
