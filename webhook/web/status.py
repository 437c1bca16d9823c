"""GET /status for operators and GET /healthz for liveness; the headers every answer carries."""

from __future__ import annotations

import secrets

from flask import Blueprint, Response, current_app, jsonify, render_template, request

from webhook.pruner import Pruner
from webhook.web.report import build_status, human_delta, human_time, reclaimed_bars, state_gauges

bp = Blueprint("status", __name__, template_folder="templates")
RECENT_RUNS = 10
# nothing an answer carries may load, run or frame anything; the page's one <style> block
# is let in by a nonce of its own
LOCKED = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"


def page_policy(nonce: str) -> str:
    return f"{LOCKED}; style-src 'nonce-{nonce}'"


@bp.after_app_request
def security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", LOCKED)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def current_status(service: Pruner) -> dict:
    target = service.settings.target
    row = service.store.target_row(target) if target else None
    runs = service.store.recent_runs(target, RECENT_RUNS) if target else []
    return build_status(service.settings, row, runs, service.clock(), service.command)


def current_gauges(service: Pruner) -> dict:
    """The state /metrics shows, read from the target's row alone (a scrape is frequent)."""
    target = service.settings.target
    row = service.store.target_row(target) if target else None
    return state_gauges(service.settings, row, service.clock())


@bp.get("/status")
def status() -> Response | str:
    shown = current_status(current_app.extensions["prunehook"])
    # configuration problems that fell back to a default (config.load_settings)
    shown["warnings"] = list(current_app.extensions.get("prunehook.warnings", []))
    # JSON for tools (and anything that does not ask otherwise); a page for browsers
    wanted = request.accept_mimetypes.best_match(["application/json", "text/html"])
    if wanted != "text/html":
        return jsonify(shown)
    nonce = secrets.token_urlsafe(16)
    page = render_template(
        "status.html",
        s=shown,
        bars=reclaimed_bars(shown["recent_runs"]),
        csp_nonce=nonce,
        when=human_time,
        delta=human_delta,
    )
    return Response(page, content_type="text/html; charset=utf-8", headers={
        "Content-Security-Policy": page_policy(nonce),
    })  # fmt: skip


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})
