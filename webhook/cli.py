"""`flask --app wsgi prune` and `flask --app wsgi status`."""

from __future__ import annotations

import json
import sys

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from .decision import Action
from .pruner import Pruner
from .status import current_status


def _service() -> Pruner:
    return current_app.extensions["prunehook"]


def _print(data: object) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.command("prune")
@with_appcontext
@click.option("--force", is_flag=True, help="Run now even inside the anti-frequency interval.")
def prune_command(force: bool) -> None:
    """Run one prune now on the configured build host and print its result.

    Honours the interval unless --force; never overrides a run in flight.
    Exits 0 when the prune ran and succeeded or was not due, 1 when it failed,
    2 when nothing could run (disabled, no target, busy).
    """
    result = _service().trigger("cli", force=force, wait=True)
    decision = result.decision
    _print({"decision": decision.action, "reason": decision.reason, "run": result.run})
    if decision.action == Action.STARTED:
        sys.exit(0 if result.run and result.run["result"] == "ok" else 1)
    sys.exit(0 if decision.action == Action.SKIPPED else 2)


@click.command("status")
@with_appcontext
def status_command() -> None:
    """Print what GET /status shows: settings, the last run, what is in flight."""
    _print(current_status(_service()))


def init_app(app: Flask) -> None:
    app.cli.add_command(prune_command)
    app.cli.add_command(status_command)
