"""GET /openapi.json: the API described from the marshmallow schemas (apispec)."""

from __future__ import annotations

from functools import cache
from typing import Any

from flask import Blueprint, Response, jsonify, request

from webhook.web import schemas
from webhook.web.auth import may_read, presented_token
from webhook.web.context import prunehook

bp = Blueprint("openapi", __name__)
TITLE = "prunehook"
VERSION = "0.1.0"


WHY = {
    400: "the body is not JSON",
    401: "missing or wrong token or signature",
    413: "the body is larger than the hook takes: 16 MiB for Alertmanager, else 1 MiB",
    422: "a field is invalid",
    503: "the state database is unavailable; retry",
}
HTML = {"text/html": {"schema": {"type": "string"}}}


def _json(schema: str | dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _answer(description: str, schema: str | dict[str, Any], html: bool = False) -> dict[str, Any]:
    return {"description": description, "content": _json(schema) | (HTML if html else {})}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): _answer(WHY[code], "Error") for code in codes}


def _word(word: str) -> dict[str, Any]:
    """`{"status": word}`: what /healthz and /readyz answer."""
    properties = {"status": {"type": "string", "enum": [word]}}
    return {"type": "object", "properties": properties, "required": ["status"]}


def _hook(summary: str, body: str, required: bool, query: type = schemas.HookQuerySchema) -> dict:
    return {
        "post": {
            "summary": summary,
            "security": [{"bearer": []}, {"standardWebhooks": []}],
            "parameters": [{"in": "query", "schema": query}],
            "requestBody": {"required": required, "content": _json(body)},
            "responses": {
                "200": _answer("decided (not started, or waited)", "TriggerAnswer"),
                "202": _answer("a prune started in the background", "TriggerAnswer"),
                **_errors(400, 401, 413, 422, 503),
            },
        }
    }


# a reader's token (PRUNEHOOK_STATUS_TOKEN or the hook token): as a bearer token, or as the
# password of HTTP Basic; `{}`: none is needed while PRUNEHOOK_STATUS_TOKEN is unset
READER: list[dict[str, list[str]]] = [{"bearer": []}, {"basic": []}]


def _get(
    summary: str,
    ok: dict,
    not_found: str = "",
    path: type | None = None,
    database: bool = True,
    security: list[dict] | None = None,
) -> dict:
    """A GET answering `ok`; `not_found`: why a 404; `path`: a schema of the path's
    parameters; `database`: it reads the state database, which may be unavailable (503);
    `security`: who may read it (else anyone)."""
    responses = {"200": ok, **({"404": _answer(not_found, "Error")} if not_found else {})}
    if security is not None:
        responses |= {"401": _answer("missing or wrong token", "Error")}
    operation = {"summary": summary, "responses": responses | (_errors(503) if database else {})}
    if security is not None:
        operation["security"] = security
    if path is not None:
        operation["parameters"] = [{"in": "path", "schema": path}]
    return {"get": operation}


@cache
def build_spec(target_names: tuple[str, ...] = ()) -> dict[str, Any]:
    from apispec import APISpec
    from apispec.ext.marshmallow import MarshmallowPlugin

    spec = APISpec(TITLE, VERSION, "3.0.3", plugins=[MarshmallowPlugin()])
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.security_scheme("basic", {"type": "http", "scheme": "basic"})
    spec.components.security_scheme(
        "standardWebhooks",
        {"type": "apiKey", "in": "header", "name": "webhook-signature"},
    )
    for schema in (
        schemas.CronPingSchema(),
        schemas.WatchdogAlertSchema(),
        schemas.AlertmanagerWebhookSchema(),
        schemas.TriggerAnswerSchema(),
        schemas.STATUS,
        schemas.OneTargetStatusSchema(),
        schemas.RunWithTailsSchema(),
        schemas.ErrorSchema(),
    ):
        spec.components.schema(type(schema).__name__.removesuffix("Schema"), schema=schema)
    page = "JSON, or a page for a browser (Accept: text/html)"
    for path, operations in {
        "/hooks/cron": _hook(
            "A cron ping: a sweep of the targets",
            "CronPing",
            False,
            schemas.cron_query(target_names),
        ),
        "/hooks/watchdog": _hook("Our disk watchdog's alert", "WatchdogAlert", True),
        "/hooks/alertmanager": _hook(
            "Alertmanager webhook (version 4)", "AlertmanagerWebhook", True
        ),
        "/status": _get(
            "every target: settings, the last run, the run in flight",
            _answer(f"status: {page}", "Status", html=True),
            security=[*READER, {}],
        ),
        "/status/{name}": _get(
            "one target: its state, the run in flight, recent runs",
            _answer(page, "OneTargetStatus", html=True),
            "no target has this name",
            schemas.TargetPathSchema,
            security=[*READER, {}],
        ),
        "/status/{name}/runs/{run_id}": _get(
            "one run of a target: every probe and stage with its output tail",
            _answer("the run", "RunWithTails"),
            "no such target, or no such run of it",
            schemas.RunPathSchema,
            security=READER,
        ),
        "/readyz": _get("readiness: the state database answers", _answer("ready", _word("ready"))),
        "/healthz": _get("liveness", _answer("alive", _word("ok")), database=False),
    }.items():
        spec.path(path, operations=operations)
    return spec.to_dict()


@bp.get("/openapi.json")
def openapi() -> Response:
    """Open to all; the targets' names (host names, often) only to those who may read /status."""
    hook = prunehook()
    readable = may_read(hook.settings.auth, presented_token(request), tails=False)
    return jsonify(build_spec(hook.service.fleet.names if readable else ()))
