"""GET /healthz and GET /readyz: open to probes and load balancers, whoever may read."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from webhook.web.context import prunehook

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: the process answers. The database's state is /readyz's."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    """Readiness: 200 when the state database answers; else 503 (errors.py) with Retry-After."""
    prunehook().service.store.ping()
    return jsonify({"status": "ready"})
