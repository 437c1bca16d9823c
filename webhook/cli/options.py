"""What the commands share: the target option, the JSON switch, exit codes."""

from __future__ import annotations

import json
from collections.abc import Sequence

import click

from webhook.core.decision import Answer, Result
from webhook.core.sizes import human_size
from webhook.core.targets import Target
from webhook.service import TargetResult
from webhook.web.context import Prunehook

TARGET_OPTION = click.option(
    "--target",
    "names",
    multiple=True,
    metavar="NAME",
    help="Only this target (repeatable). Default: every target.",
)

JSON_OPTION = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (what the HTTP API answers) for tools."
)


def print_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def chosen(hook: Prunehook, names: Sequence[str]) -> list[Target]:
    """The targets named (all when none is); an unknown name is a usage error (exit 2)."""
    fleet = hook.service.fleet
    unknown = fleet.unknown(names)
    if unknown:
        raise click.BadParameter(f"no target named {', '.join(unknown)} (known: {fleet.known()})")
    return [t for t in fleet if t.name in names] if names else list(fleet)


def exit_code(results: Sequence[TargetResult]) -> int:
    """0: every run succeeded or was not due; 1: a run failed; 2: something could not run."""
    started = [r for r in results if r.answer == Answer.STARTED]
    if any(r.run is None or r.run.result != Result.OK for r in started):
        return 1
    if all(r.answer in (Answer.STARTED, Answer.SKIPPED) for r in results):
        return 0
    return 2


def goals(target: Target) -> str:
    """`max_cache=10GB min_free=15%`: the target's disk goals, as the targets file says them."""
    policy = target.policy
    said = []
    if policy.max_cache is not None:
        said.append(f"max_cache={human_size(policy.max_cache)}")
    if policy.min_free is not None:
        said.append(f"min_free={policy.min_free}")
    return " ".join(said)
