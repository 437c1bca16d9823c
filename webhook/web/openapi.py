"""GET /openapi.json: the API described from the marshmallow schemas (apispec)."""

from __future__ import annotations

from functools import cache
from typing import Any

from flask import Blueprint, Response, jsonify

from webhook.core.targets import NAME_PATTERN
from webhook.web.context import prunehook
from webhook.web.schemas import RUN_ID_MAX

bp = Blueprint("openapi", __name__)
TITLE = "prunehook"
VERSION = "0.1.0"


def _errors(*codes: int) -> dict[str, Any]:
    why = {
        400: "the body is not JSON",
        401: "missing or wrong token or signature",
        413: "the body is larger than the hook takes: 16 MiB for Alertmanager, else 1 MiB",
        422: "a field is invalid",
        503: "the state database is unavailable; retry",
    }
    return {str(code): {"description": why[code], "content": _json("Error")} for code in codes}


_ALIVE = {
    "type": "object",
    "properties": {"status": {"type": "string", "enum": ["ok"]}},
    "required": ["status"],
}


_READY = {
    "type": "object",
    "properties": {"status": {"type": "string", "enum": ["ready"]}},
    "required": ["status"],
}


def _json(schema: str | dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


_WAIT = {
    "name": "wait",
    "in": "query",
    "required": False,
    "description": "1 or true: wait for the prune's result instead of answering at once;"
    " absent means 0",
    "schema": {"type": "string", "enum": ["0", "1", "true", "false"]},
}


def _targets(names: tuple[str, ...]) -> dict[str, Any]:
    """`?target=`: the names are this instance's targets, so the document lists them."""
    item: dict[str, Any] = {"type": "string", "pattern": NAME_PATTERN}
    if names:
        item["enum"] = list(names)
    return {
        "name": "target",
        "in": "query",
        "required": False,
        "description": "only these targets (repeatable); default: every target. A name that"
        " is no target is a 422",
        "schema": {"type": "array", "items": item},
        "style": "form",
        "explode": True,
    }


def _hook(
    summary: str, body: str, body_required: bool, parameters: tuple[dict[str, Any], ...] = ()
) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "security": [{"bearer": []}, {"standardWebhooks": []}],
            "parameters": [_WAIT, *parameters],
            "requestBody": {"required": body_required, "content": _json(body)},
            "responses": {
                "200": {
                    "description": "decided (not started, or waited)",
                    "content": _json("TriggerAnswer"),
                },
                "202": {
                    "description": "a prune started in the background",
                    "content": _json("TriggerAnswer"),
                },
                **_errors(400, 401, 413, 422, 503),
            },
        }
    }


@cache
def build_spec(target_names: tuple[str, ...] = ()) -> dict[str, Any]:
    from apispec import APISpec
    from apispec.ext.marshmallow import MarshmallowPlugin

    from webhook.web.schemas import (
        AlertmanagerWebhookSchema,
        CronPingSchema,
        ErrorSchema,
        OneTargetStatusSchema,
        RunWithTailsSchema,
        StatusSchema,
        TriggerAnswerSchema,
        WatchdogAlertSchema,
    )

    spec = APISpec(TITLE, VERSION, "3.0.3", plugins=[MarshmallowPlugin()])
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.security_scheme(
        "standardWebhooks",
        {"type": "apiKey", "in": "header", "name": "webhook-signature"},
    )
    for name, schema in [
        ("CronPing", CronPingSchema),
        ("WatchdogAlert", WatchdogAlertSchema),
        ("AlertmanagerWebhook", AlertmanagerWebhookSchema),
        ("TriggerAnswer", TriggerAnswerSchema),
        ("Status", StatusSchema),
        ("OneTargetStatus", OneTargetStatusSchema),
        ("RunWithTails", RunWithTailsSchema),
        ("Error", ErrorSchema),
    ]:
        spec.components.schema(name, schema=schema)
    spec.path(
        "/hooks/cron",
        operations=_hook(
            "A cron ping: a sweep of the targets", "CronPing", False, (_targets(target_names),)
        ),
    )
    spec.path(
        "/hooks/watchdog", operations=_hook("Our disk watchdog's alert", "WatchdogAlert", True)
    )
    spec.path(
        "/hooks/alertmanager",
        operations=_hook("Alertmanager webhook (version 4)", "AlertmanagerWebhook", True),
    )
    spec.path(
        "/status",
        operations={
            "get": {
                "summary": "every target: settings, the last run, the run in flight",
                "responses": {
                    "200": {
                        "description": "status: JSON, or a page for a browser (Accept: text/html)",
                        "content": {
                            **_json("Status"),
                            "text/html": {"schema": {"type": "string"}},
                        },
                    },
                    **_errors(503),
                },
            }
        },
    )
    spec.path(
        "/status/{name}",
        operations={
            "get": {
                "summary": "one target: its state, the run in flight, recent runs",
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "JSON, or a page for a browser (Accept: text/html)",
                        "content": {
                            **_json("OneTargetStatus"),
                            "text/html": {"schema": {"type": "string"}},
                        },
                    },
                    "404": {"description": "no target has this name", "content": _json("Error")},
                    **_errors(503),
                },
            }
        },
    )
    spec.path(
        "/status/{name}/runs/{run_id}",
        operations={
            "get": {
                "summary": "one run of a target: every probe and stage with its output tail",
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                    {
                        "name": "run_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer", "minimum": 0, "maximum": RUN_ID_MAX},
                    },
                ],
                "responses": {
                    "200": {"description": "the run", "content": _json("RunWithTails")},
                    "404": {
                        "description": "no such target, or no such run of it",
                        "content": _json("Error"),
                    },
                    **_errors(503),
                },
            }
        },
    )
    spec.path(
        "/readyz",
        operations={
            "get": {
                "summary": "readiness: the state database answers",
                "responses": {
                    "200": {"description": "ready", "content": _json(_READY)},
                    **_errors(503),
                },
            }
        },
    )
    spec.path(
        "/healthz",
        operations={
            "get": {
                "summary": "liveness",
                "responses": {"200": {"description": "alive", "content": _json(_ALIVE)}},
            }
        },
    )
    return spec.to_dict()


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(build_spec(prunehook().service.fleet.names))
