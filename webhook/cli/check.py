"""`check` (preflight after configuring) and `notify --test`."""

from __future__ import annotations

import socket
import sys
from collections.abc import Sequence

import click
from flask import current_app
from flask.cli import with_appcontext

from webhook.cli.options import TARGET_OPTION, chosen
from webhook.core.notices import Notice, Reason, Severity
from webhook.web.context import Prunehook, prunehook


@click.command("check", short_help="Check the configuration and each build host, read-only.")
@with_appcontext
@TARGET_OPTION
def check_command(names: tuple[str, ...]) -> None:
    """Preflight after configuring: config, token, and for each target its key, host key,
    SSH login, Docker (and buildx), the disk holding Docker's data, the build cache, the
    stage-2 bound a run would use now, what is known of BuildKit's own GC, and a watched
    target's forecast as its last measure drew it.

    One line per check; a failed check says how to fix it, a WARN is worth knowing. Runs
    only the read-only probes a run makes (docker version, docker buildx version, df,
    docker system df, docker buildx inspect; docker info's DockerRootDir when df cannot
    measure docker_root) on one connection per host. Exits 1 when any check fails.
    """
    sys.exit(checked(prunehook(), names))


def checked(hook: Prunehook, names: Sequence[str]) -> int:
    """Runs and prints the checks of the targets named (every one when none is): 0 when
    every check passed, else 1."""
    from webhook.preflight import run_checks, token_source  # SSH is only this command's

    targets = chosen(hook, names)
    source = token_source(hook.settings, current_app.instance_path)
    store, clock = hook.service.store, hook.service.clock
    checks = run_checks(hook.settings, targets, source, list(hook.warnings), store, clock)
    for check in checks:
        click.echo(check.line())
    return 0 if all(check.ok for check in checks) else 1


@click.command("notify", short_help="Send a test notification to each destination.")
@with_appcontext
@click.option("--test", "send_test", is_flag=True, help="Send a test notification now.")
def notify_command(send_test: bool) -> None:
    """Send a test notification to every configured destination (PRUNEHOOK_NOTIFY_URLS,
    Telegram's variables) and say, for each, whether it was delivered. Exits 1 when one
    was not, 2 when none is configured."""
    if not send_test:
        raise click.UsageError("say what to do: --test sends a test notification")
    hook = prunehook()
    notifier = hook.notifier
    if not notifier.destinations:
        click.echo("no destination: set PRUNEHOOK_NOTIFY_URLS (or Telegram's variables)")
        sys.exit(2)
    notice = Notice(
        target="-",
        reason=Reason.TEST,
        severity=Severity.INFO,
        title="prunehook: test notification",
        body=f"prunehook on {socket.gethostname()} can reach this destination.",
    )
    deliveries = notifier.send_now(notice)
    for place, (destination, delivery) in enumerate(
        zip(notifier.destinations, deliveries, strict=True), 1
    ):
        said = "sent" if delivery.ok else f"FAILED: {delivery.detail or 'failed'}"
        click.echo(f"{destination.scheme} #{place}: {said}")
    sys.exit(0 if all(delivery.ok for delivery in deliveries) else 1)
