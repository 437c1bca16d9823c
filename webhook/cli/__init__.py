"""The operator's commands: `prunehook ...` (main.py), and the same under
`flask --app wsgi ...` (COMMANDS). Each module holds one job's commands; shown.py says
what they print to people."""

from __future__ import annotations

import click

from webhook.cli.check import check_command, notify_command
from webhook.cli.fleet import prune_command, status_command, targets_command
from webhook.cli.hosts import hosts_group
from webhook.cli.state import state_group

# what `flask --app wsgi NAME` runs, by name (webhook.app registers them lazily)
COMMANDS: dict[str, click.Command] = {
    "targets": targets_command,
    "prune": prune_command,
    "status": status_command,
    "check": check_command,
    "state": state_group,
    "hosts": hosts_group,
    "notify": notify_command,
}
