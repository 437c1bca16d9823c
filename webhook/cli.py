"""`flask --app wsgi targets | prune | status | check`: the operator's commands."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

import click
from flask import current_app
from flask.cli import with_appcontext

from webhook.config import ConfigError
from webhook.core.decision import Answer, Result
from webhook.core.sizes import human_size
from webhook.core.targets import Target
from webhook.core.triggers import Source, Trigger
from webhook.service import TargetResult
from webhook.store import StateConflict, StoreUnavailable
from webhook.web.context import Prunehook, prunehook
from webhook.web.report import human_delta, human_time
from webhook.web.schemas import result_view
from webhook.web.status import fleet_status, one_target

TARGET_OPTION = click.option(
    "--target",
    "names",
    multiple=True,
    metavar="NAME",
    help="Only this target (repeatable). Default: every target.",
)


def _print(data: object) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _chosen(hook: Prunehook, names: Sequence[str]) -> list[Target]:
    """The targets named (all when none is); an unknown name is a usage error (exit 2)."""
    fleet = hook.service.fleet
    unknown = fleet.unknown(names)
    if unknown:
        raise click.BadParameter(f"no target named {', '.join(unknown)} (known: {fleet.known()})")
    return [t for t in fleet if t.name in names] if names else list(fleet)


def _exit_code(results: Sequence[TargetResult]) -> int:
    """0: every run succeeded or was not due; 1: a run failed; 2: something could not run."""
    started = [r for r in results if r.answer == Answer.STARTED]
    if any(r.run is None or r.run.result != Result.OK for r in started):
        return 1
    if all(r.answer in (Answer.STARTED, Answer.SKIPPED) for r in results):
        return 0
    return 2


def _goals(target: Target) -> str:
    policy = target.policy
    goals = []
    if policy.max_cache is not None:
        goals.append(f"max_cache={human_size(policy.max_cache)}")
    if policy.min_free is not None:
        goals.append(f"min_free={policy.min_free}")
    return " ".join(goals)


@click.command("targets")
@with_appcontext
def targets_command() -> None:
    """List the configured build hosts: name, SSH endpoint, aliases and prune policy."""
    hook = prunehook()
    if not hook.service.fleet:
        click.echo("no target: set PRUNEHOOK_SSH_HOST or PRUNEHOOK_TARGETS_FILE")
        sys.exit(2)
    for target in hook.service.fleet:
        policy = target.policy
        aliases = f"  aliases: {', '.join(target.aliases)}" if target.aliases else ""
        flags = " -a" if policy.prune_all else ""
        goals = f"  {_goals(target)}" if policy.goals.any else ""
        click.echo(
            f"{target.name:<24} {target.ssh}  until={policy.until}{flags}"
            f" every {policy.interval_s:g}s{goals}{aliases}"
        )


@click.command("prune")
@with_appcontext
@TARGET_OPTION
@click.option("--force", is_flag=True, help="Run now even inside the anti-frequency interval.")
@click.option(
    "--dry-run", is_flag=True, help="Print each target and its exact command; run nothing."
)
def prune_command(names: tuple[str, ...], force: bool, dry_run: bool) -> None:
    """Run one prune now on each build host (or those given by --target); print the results.

    Honours the interval unless --force; never overrides a run in flight. Runs at most
    PRUNEHOOK_MAX_PARALLEL at once. Exits 0 when every prune ran and succeeded or was not
    due, 1 when one failed, 2 when something could not run (disabled, no target, busy).
    """
    hook = prunehook()
    targets = _chosen(hook, names)
    if dry_run:
        if not targets:
            click.echo("target:  (none: set PRUNEHOOK_SSH_HOST or PRUNEHOOK_TARGETS_FILE)")
        for target in targets:
            click.echo(f"target:  {target.name} ({target.ssh})")
            click.echo(f"command: {hook.service.command(target)}")
            if target.policy.goals.any:
                flag = " -a" if target.policy.prune_all else ""
                click.echo(
                    f"then:    docker builder prune -f{flag} --keep-storage <bytes>, when a goal"
                    f" ({_goals(target)}) is still missed; the bytes from the disk as measured"
                )
        return
    trigger = Trigger(Source.CLI, True, "flask prune", names=tuple(names) or None)
    outcome = hook.service.handle(trigger, wait=True, force=force)
    hook.flush_notifications()  # sent before the process ends
    shown = [result_view(result) for result in outcome.results]
    first = shown[0]
    _print({**first, "results": shown} if len(shown) == 1 else {"results": shown})
    now = hook.service.clock()
    for result in outcome.results:
        at = result.next_eligible_ts
        if at is not None:  # said to the operator; stdout stays JSON
            when = f"{human_time(at)} (in {human_delta(at - now)})"
            click.echo(f"{result.target}: {result.reason}; next allowed at {when}", err=True)
    sys.exit(_exit_code(outcome.results))


@click.command("status")
@with_appcontext
@TARGET_OPTION
def status_command(names: tuple[str, ...]) -> None:
    """Print what GET /status shows (or GET /status/NAME for each --target)."""
    hook = prunehook()
    if not names:
        _print(fleet_status(hook))
        return
    shown = [one_target(hook, target) for target in _chosen(hook, names)]
    _print(shown[0] if len(shown) == 1 else shown)


@click.command("check")
@with_appcontext
@TARGET_OPTION
def check_command(names: tuple[str, ...]) -> None:
    """Preflight after configuring: config, token, and for each target its key, host key,
    SSH login, Docker (and buildx), the disk holding Docker's data, the build cache, the
    stage-2 bound a run would use now, what is known of BuildKit's own GC, and a watched
    target's forecast as its last measure drew it.

    One line per check; a failed check says how to fix it, a WARN is worth knowing. Runs
    only the read-only probes a run makes (docker version, docker buildx version, df,
    docker system df, docker buildx inspect) on one connection per host. Exits 1 when any
    check fails.
    """
    hook = prunehook()
    targets = _chosen(hook, names)
    from webhook.preflight import run_checks, token_source  # SSH is only this command's

    source = token_source(hook.settings, current_app.instance_path)
    service = hook.service
    checks = run_checks(
        hook.settings, targets, source, list(hook.warnings), service.store, service.clock
    )
    for check in checks:
        click.echo(check.line())
    sys.exit(0 if all(check.ok for check in checks) else 1)


@click.group("state")
def state_group() -> None:
    """Move the state (each target's row, run history, delivery ids) between databases."""


# where `state copy` reads its destination: argv is shown by ps and kept in shell history
COPY_URL_VARIABLE = "PRUNEHOOK_COPY_TO_URL"


def _copy_destination(option: str | None) -> tuple[str, str]:
    """The destination's URL and where it was given: PRUNEHOOK_COPY_TO_URL, or --to when that
    carries no password. Never repeats the URL."""
    from webhook.store.postgres import url_passwords

    variable = os.environ.get("PRUNEHOOK_COPY_TO_URL", "").strip()  # COPY_URL_VARIABLE
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
    if not url.startswith(("postgresql://", "postgres://")):
        why = "must be a postgresql:// (or postgres://) URL"
        raise click.BadParameter(why, param_hint=given_in)
    if hook.settings.server.database_url:
        raise click.UsageError("the state is in PostgreSQL already (PRUNEHOOK_DATABASE_URL)")
    try:
        destination = PostgresStore(url, variable=given_in)
    except ConfigError as error:
        click.echo(f"{error}\nnothing was copied", err=True)
        sys.exit(1)
    dump = SQLiteStore(hook.settings.server.db_path).dump()
    try:
        destination.load(dump)
    except StateConflict as conflict:
        click.echo(f"refused: the destination {conflict}; nothing was copied", err=True)
        sys.exit(1)
    except StoreUnavailable as error:
        click.echo(f"cannot reach the destination: {error}", err=True)
        sys.exit(1)
    finally:
        destination.close()
    click.echo(
        f"copied {len(dump.targets)} target(s), {len(dump.runs)} run(s) and"
        f" {len(dump.deliveries)} delivery id(s) from {hook.settings.server.db_path}"
    )


# what `flask --app wsgi NAME` runs, by name (webhook.app registers them lazily)
COMMANDS = {
    "targets": targets_command,
    "prune": prune_command,
    "status": status_command,
    "check": check_command,
    "state": state_group,
}
