"""`targets`, `prune` and `status`: the fleet as configured, a prune now, and its state."""

from __future__ import annotations

import sys

import click
from flask.cli import with_appcontext

from webhook.cli.options import (
    JSON_OPTION,
    TARGET_OPTION,
    chosen,
    exit_code,
    goals,
    print_json,
)
from webhook.cli.shown import NO_TARGET, result_line, status_table
from webhook.core.targets import Target
from webhook.core.triggers import Source, Trigger
from webhook.web.context import Prunehook, prunehook
from webhook.web.schemas import answer_of
from webhook.web.status import fleet_status, one_target


@click.command("targets", short_help="List the configured build hosts.")
@with_appcontext
def targets_command() -> None:
    """List the configured build hosts: name, SSH endpoint, aliases and prune policy."""
    hook = prunehook()
    if not hook.service.fleet:
        click.echo(NO_TARGET)
        sys.exit(2)
    for target in hook.service.fleet:
        policy = target.policy
        aliases = f"  aliases: {', '.join(target.aliases)}" if target.aliases else ""
        flags = " -a" if policy.prune_all else ""
        said = f"  {goals(target)}" if policy.goals.any else ""
        click.echo(
            f"{target.name:<24} {target.ssh}  until={policy.until}{flags}"
            f" every {policy.interval_s:g}s{said}{aliases}"
        )


def _dry_run(hook: Prunehook, targets: list[Target]) -> None:
    if not targets:
        click.echo(f"target:  ({NO_TARGET})")
    for target in targets:
        click.echo(f"target:  {target.name} ({target.ssh})")
        click.echo(f"command: {hook.service.command(target)}")
        if target.policy.goals.any:
            flag = " -a" if target.policy.prune_all else ""
            click.echo(
                f"then:    docker builder prune -f{flag} --keep-storage <bytes>, when a goal"
                f" ({goals(target)}) is still missed; the bytes from the disk as measured"
            )


@click.command("prune", short_help="Prune now, on every build host or those named.")
@with_appcontext
@TARGET_OPTION
@click.option("--force", is_flag=True, help="Run now even inside the anti-frequency interval.")
@click.option(
    "--dry-run", is_flag=True, help="Print each target and its exact command; run nothing."
)
@JSON_OPTION
def prune_command(names: tuple[str, ...], force: bool, dry_run: bool, as_json: bool) -> None:
    """Run one prune now on each build host (or those given by --target); say what each did.

    Honours the interval unless --force; never overrides a run in flight. Runs at most
    PRUNEHOOK_MAX_PARALLEL at once. Exits 0 when every prune ran and succeeded or was not
    due, 1 when one failed, 2 when something could not run (disabled, no target, busy).
    """
    hook = prunehook()
    targets = chosen(hook, names)
    if dry_run:
        _dry_run(hook, targets)
        return
    trigger = Trigger(Source.CLI, True, "prunehook prune", names=tuple(names) or None)
    outcome = hook.service.handle(trigger, wait=True, force=force)
    hook.notifier.flush()  # sent before the process ends
    if as_json:
        shown = [answer_of(result) for result in outcome.results]
        print_json({**shown[0], "results": shown} if len(shown) == 1 else {"results": shown})
    else:
        now, fleet = hook.service.clock(), hook.service.fleet
        for result in outcome.results:
            target = fleet.get(result.target) if result.target else None
            click.echo(result_line(result, target, now))
    sys.exit(exit_code(outcome.results))


@click.command("status", short_help="Each build host's state, one line each.")
@with_appcontext
@TARGET_OPTION
@JSON_OPTION
def status_command(names: tuple[str, ...], as_json: bool) -> None:
    """Each target's state in one line: the last prune, the disk, when the next may run and
    when the disk would fill. With --json, what GET /status answers (GET /status/NAME for
    each --target)."""
    hook = prunehook()
    if as_json:
        if not names:
            print_json(fleet_status(hook))
            return
        shown = [one_target(hook, t) for t in chosen(hook, names)]
        print_json(shown[0] if len(shown) == 1 else shown)
        return
    if not hook.service.fleet:
        click.echo(NO_TARGET)
        sys.exit(2)
    everything = fleet_status(hook)
    wanted = {target.name for target in chosen(hook, names)}
    listed = [shown for shown in everything["targets"] if shown["name"] in wanted]
    click.echo(status_table(listed, everything["now"]))
