"""GET /status for operators and GET /healthz for liveness."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, render_template, request

from .pruner import Pruner
from .report import build_status, human_delta, human_time, reclaimed_bars

bp = Blueprint("status", __name__)
RECENT_RUNS = 10


def current_status(service: Pruner) -> dict:
    target = service.settings.target
    row = service.store.target_row(target) if target else None
    runs = service.store.recent_runs(target, RECENT_RUNS) if target else []
    return build_status(service.settings, row, runs, service.clock(), service.command)


@bp.get("/status")
def status() -> Response | str:
    shown = current_status(current_app.extensions["prunehook"])
    # configuration problems that fell back to a default (config.load_settings)
    shown["warnings"] = list(current_app.extensions.get("prunehook.warnings", []))
    # JSON for tools (and anything that does not ask otherwise); a page for browsers
    wanted = request.accept_mimetypes.best_match(["application/json", "text/html"])
    if wanted != "text/html":
        return jsonify(shown)
    bars = reclaimed_bars(shown["recent_runs"])
    return render_template("status.html", s=shown, bars=bars, when=human_time, delta=human_delta)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})
