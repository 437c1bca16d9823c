"""GET /status (the fleet), GET /status/<name> (one target), GET /status/<name>/runs/<id>."""

from __future__ import annotations

import secrets
from collections import Counter
from typing import Any

from flask import Blueprint, Response, jsonify, render_template

from webhook.core.disk import Goals
from webhook.core.duration import span
from webhook.core.sizes import BIGINT_MAX, human_size
from webhook.core.targets import Target
from webhook.store import TargetRecord
from webhook.web.answers import page_policy, prefers_html
from webhook.web.auth import guard_reading
from webhook.web.context import Prunehook, prunehook
from webhook.web.errors import APIError
from webhook.web.report import (
    HostState,
    disk_chart,
    fill_headline,
    fill_words,
    free_chart,
    freed_text,
    host_state,
    human_time,
    pruning,
    reclaimed_bars,
    target_status,
    worst_first,
)
from webhook.web.schemas import RUN_WITH_TAILS

bp = Blueprint("status", __name__, template_folder="templates")
# a run's output tails (Docker's versions, its socket path, errors) are for a token holder
guard_reading(bp, tails=("status.run",))
RECENT_RUNS = 10


def one_target(hook: Prunehook, target: Target) -> dict[str, Any]:
    """A target's status with its recent runs, and its name as `target` (GET /status/NAME)."""
    record = hook.service.store.target_record(target.name)
    return {**_with_runs(hook, target, record, hook.service.clock()), "target": target.name}


def _with_runs(
    hook: Prunehook, target: Target | None, record: TargetRecord | None, now: float
) -> dict[str, Any]:
    service = hook.service
    policy = target.policy if target else hook.settings.targets.base_policy
    runs = service.store.recent_runs(target.name, RECENT_RUNS) if target else []
    return target_status(target, policy, record, now, enabled=service.enabled, runs=runs)


def fleet_status(hook: Prunehook) -> dict[str, Any]:
    """Every target, worst first; with exactly one (or none), its keys at the top level
    too, where single-host tools read them."""
    service, settings = hook.service, hook.settings
    now = service.clock()
    records = service.store.target_records()
    targets = [
        target_status(t, t.policy, records.get(t.name), now, enabled=service.enabled)
        for t in service.fleet
    ]
    shown: dict[str, Any] = {}
    if len(service.fleet) <= 1:
        # the row already read, and the same time as the targets' list
        only = next(iter(service.fleet), None)
        single = _with_runs(hook, only, records.get(only.name) if only else None, now)
        shown.update(single, target=single["name"])
        del shown["name"]
    shown.update(
        enabled=service.enabled,
        now=now,
        targets=worst_first(targets),
        notify={
            "schemes": hook.notifier.schemes,
            "min_gb": settings.notify.min_gb,
            "failures": settings.notify.failures,
        },
        warnings=list(hook.warnings),
    )
    return shown


def _page(template: str, **context: Any) -> Response:
    nonce = secrets.token_urlsafe(16)
    page = render_template(
        template, csp_nonce=nonce, when=human_time, delta=span, size=human_size,
        freed=freed_text, fill=fill_headline, fill_words=fill_words, **context,
    )  # fmt: skip
    return Response(page, content_type="text/html; charset=utf-8", headers={
        "Content-Security-Policy": page_policy(nonce),
    })  # fmt: skip


def _free_chart(hook: Prunehook, target: Target | None, now: float) -> dict[str, Any] | None:
    """The chart of free space over the forecast window: drawn on a target's own page
    only, so a fleet page never reads any target's samples."""
    if target is None:
        return None
    window = target.policy.forecast_window_s
    samples = hook.service.store.samples(target.name, now - window)
    return free_chart(samples, target.policy.goals, now, window)


def _target_page(hook: Prunehook, shown: dict[str, Any], target: Target | None) -> Response:
    runs = shown["recent_runs"]
    goals = target.policy.goals if target else Goals()
    return _page(
        "status.html", s=shown, bars=reclaimed_bars(runs), disk=disk_chart(runs, goals),
        fleet_size=len(hook.service.fleet), free=_free_chart(hook, target, shown["now"]),
        watched=bool(target and target.policy.watch_interval_s > 0),
    )  # fmt: skip


def _fleet_page(shown: dict[str, Any]) -> Response:
    """One row per target, worst first (as `shown["targets"]` is), under counts by state."""
    targets = shown["targets"]
    rows = [{"t": t, "state": host_state(t), "pruning": pruning(t)} for t in targets]
    counts = Counter(row["state"] for row in rows)
    failing = counts[HostState.STALLED] + counts[HostState.FAILED] + counts[HostState.LOST]
    return _page(
        "fleet.html",
        s=shown,
        rows=rows,
        counts=counts,
        states=HostState,
        failing=failing,
        running=sum(row["pruning"] for row in rows),
    )


@bp.get("/status")
def status() -> Response:
    hook = prunehook()
    shown = fleet_status(hook)
    if not prefers_html():
        return jsonify(shown)
    if len(hook.service.fleet) <= 1:
        return _target_page(hook, shown, next(iter(hook.service.fleet), None))
    return _fleet_page(shown)


def _named(hook: Prunehook, name: str) -> Target:
    found = hook.service.fleet.get(name)
    if found is None:
        raise APIError(f"no target is named {name!r}", status=404, code="unknown_target")
    return found


@bp.get("/status/<name>")
def target(name: str) -> Response:
    hook = prunehook()
    found = _named(hook, name)
    shown = one_target(hook, found)
    if not prefers_html():
        return jsonify(shown)
    # the page says how far away times are; the JSON keeps one target's keys
    return _target_page(hook, {**shown, "now": hook.service.clock()}, found)


@bp.get("/status/<name>/runs/<int:run_id>")
def run(name: str, run_id: int) -> Response:
    """One run of a target with every step's output tail (JSON)."""
    hook = prunehook()
    _named(hook, name)
    found = hook.service.store.run(run_id) if run_id <= BIGINT_MAX else None
    if found is None or found.target != name:
        raise APIError(f"{name} has no run {run_id}", status=404, code="unknown_run")
    return jsonify(RUN_WITH_TAILS.dump(found))
