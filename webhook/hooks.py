"""POST /hooks/{cron,watchdog,alertmanager}: authenticate, validate, decide, answer."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from marshmallow import Schema, ValidationError

from .auth import authenticate
from .decision import Action, Decision
from .errors import APIError, ValidationFailed
from .pruner import Pruner, TriggerResult
from .schemas import AlertmanagerWebhookSchema, CronPingSchema, WatchdogAlertSchema
from .sources import Verdict, read_alertmanager, read_cron, read_watchdog

bp = Blueprint("hooks", __name__, url_prefix="/hooks")
log = logging.getLogger(__name__)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}
# loading is thread-safe and building a schema is not free: one instance each
CRON_PING = CronPingSchema()
WATCHDOG_ALERT = WatchdogAlertSchema()
ALERTMANAGER_WEBHOOK = AlertmanagerWebhookSchema()
# senders retry a delivery with its id and a fresh timestamp: remember ids well past that
DELIVERY_IDS_KEPT_S = 24 * 3600


def pruner() -> Pruner:
    return current_app.extensions["prunehook"]


def _json_body(allow_empty: bool) -> Any:
    raw = request.get_data(cache=True)
    if not raw.strip():
        if allow_empty:
            return {}
        raise APIError("the body is empty; a JSON object is expected", code="empty_body")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise APIError(f"the body is not valid JSON: {error}", code="invalid_json") from error
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object", {"_schema": ["not an object"]})
    return body


def _load(schema: Schema, allow_empty: bool = False) -> dict[str, Any]:
    body = _json_body(allow_empty)
    if allow_empty and not body:
        return {}  # the common cron ping: nothing to validate
    try:
        return schema.load(body)
    except ValidationError as error:
        messages = error.normalized_messages()
        named = ", ".join(sorted(messages))
        raise ValidationFailed(f"invalid fields: {named}", messages) from error


def _wants_wait() -> bool:
    if not request.query_string:
        return False  # the common call: parsing no query costs more than the rest of a skip
    value = request.args.get("wait", "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValidationFailed("wait must be 1/true or 0/false", {"wait": [f"not a flag: {value!r}"]})


def _decide(
    service: Pruner, verdict: Verdict, wait: bool, delivery_id: str | None
) -> TriggerResult:
    if delivery_id is not None and not service.store.remember_delivery(
        delivery_id, service.clock(), keep_s=DELIVERY_IDS_KEPT_S
    ):
        return TriggerResult(Decision(Action.DUPLICATE, "this webhook-id was already received"))
    if not verdict.wants_prune:
        return TriggerResult(Decision(Action.IGNORED, verdict.reason))
    return service.trigger(verdict.source, wait=wait, request_id=g.request_id)


def _answer(
    service: Pruner, verdict: Verdict, result: TriggerResult, wait: bool
) -> tuple[Response, int]:
    decision, request_id = result.decision, g.request_id
    current_app.extensions["prunehook.metrics"].decided(decision.action, verdict.source)
    fields = {
        "decision": decision.action,
        "reason": decision.reason,
        "trigger": verdict.reason,
        "run_id": result.run_id,
        "request_id": request_id,
    }
    log.info(
        "trigger %s: %s",
        verdict.source,
        decision.action,
        extra={"fields": {"event": "trigger", "source": verdict.source, **fields}},
    )
    body: dict[str, Any] = {
        **fields,
        "target": service.settings.target,
        "next_eligible_ts": decision.next_eligible_ts,
    }
    if result.run is not None:
        body["run"] = {key: value for key, value in result.run.items() if key != "target"}
    started_in_background = decision.action == Action.STARTED and not wait
    return jsonify(body), 202 if started_in_background else 200


def _handle(
    schema: Schema, read: Callable[[dict[str, Any]], Verdict], allow_empty: bool = False
) -> tuple[Response, int]:
    """Every hook: authenticate, validate, read the payload, decide, answer."""
    service = pruner()
    delivery_id = authenticate(service.settings, service.clock())
    wait = _wants_wait()
    verdict = read(_load(schema, allow_empty))
    return _answer(service, verdict, _decide(service, verdict, wait, delivery_id), wait)


@bp.post("/cron")
def cron() -> tuple[Response, int]:
    return _handle(CRON_PING, read_cron, allow_empty=True)


@bp.post("/watchdog")
def watchdog() -> tuple[Response, int]:
    return _handle(WATCHDOG_ALERT, read_watchdog)


@bp.post("/alertmanager")
def alertmanager() -> tuple[Response, int]:
    return _handle(ALERTMANAGER_WEBHOOK, read_alertmanager)
