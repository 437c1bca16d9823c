"""GET /status for operators and GET /healthz for liveness."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from .pruner import Pruner
from .report import build_status

bp = Blueprint("status", __name__)
RECENT_RUNS = 10


def current_status(service: Pruner) -> dict:
    target = service.settings.target
    row = service.store.target_row(target) if target else None
    runs = service.store.recent_runs(target, RECENT_RUNS) if target else []
    return build_status(service.settings, row, runs, service.clock(), service.command)


@bp.get("/status")
def status() -> Response:
    return jsonify(current_status(current_app.extensions["prunehook"]))


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})
