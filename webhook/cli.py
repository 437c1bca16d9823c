"""`flask --app wsgi prune` and `flask --app wsgi status`."""

from __future__ import annotations

import json
import sys

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from webhook.core.decision import Action
from webhook.preflight import run_checks, token_source
from webhook.pruner import Pruner
from webhook.web.status import current_status


def _service() -> Pruner:
    return current_app.extensions["prunehook"]


def _print(data: object) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.command("prune")
@with_appcontext
@click.option("--force", is_flag=True, help="Run now even inside the anti-frequency interval.")
@click.option(
    "--dry-run", is_flag=True, help="Print the target and the exact command; run nothing."
)
def prune_command(force: bool, dry_run: bool) -> None:
    """Run one prune now on the configured build host and print its result.

    Honours the interval unless --force; never overrides a run in flight.
    Exits 0 when the prune ran and succeeded or was not due, 1 when it failed,
    2 when nothing could run (disabled, no target, busy).
    """
    if dry_run:
        service = _service()
        target = service.settings.env_target
        shown = (
            f"{target.name} ({target.ssh})" if target else "(none: PRUNEHOOK_SSH_HOST is not set)"
        )
        click.echo(f"target:  {shown}")
        click.echo(f"command: {service.command}")
        return
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


@click.command("check")
@with_appcontext
def check_command() -> None:
    """Preflight after configuring: config, token, key, host key, SSH login, Docker.

    One line per check; a failed check says how to fix it. Runs only the read-only
    `docker version` on the host. Exits 1 when any check fails.
    """
    service = _service()
    warnings = current_app.extensions.get("prunehook.warnings", [])
    source = token_source(service.settings, current_app.instance_path)
    checks = run_checks(service.settings, source, warnings)
    for check in checks:
        click.echo(check.line())
    sys.exit(0 if all(check.ok for check in checks) else 1)


def init_app(app: Flask) -> None:
    app.cli.add_command(prune_command)
    app.cli.add_command(status_command)
    app.cli.add_command(check_command)
