"""POST /hooks/{cron,watchdog,alertmanager}: authenticate, validate, decide, answer."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from marshmallow import Schema, ValidationError

from .auth import authenticate
from .decision import Action, Decision
from .errors import APIError, ValidationFailed
from .pruner import Pruner, TriggerResult
from .schemas import AlertmanagerWebhookSchema, CronPingSchema, WatchdogAlertSchema, run_view
from .sources import Verdict, read_alertmanager, read_cron, read_watchdog
from .store import StoreUnavailable

bp = Blueprint("hooks", __name__, url_prefix="/hooks")
log = logging.getLogger(__name__)
# exactly what /openapi.json lists; absent means 0
_TRUE = {"1", "true"}
_FALSE = {"0", "false"}
# loading is thread-safe and building a schema is not free: one instance each
CRON_PING = CronPingSchema()
WATCHDOG_ALERT = WatchdogAlertSchema()
ALERTMANAGER_WEBHOOK = AlertmanagerWebhookSchema()
# senders retry a delivery with its id and a fresh timestamp: remember ids well past that
DELIVERY_IDS_KEPT_S = 24 * 3600
# Alertmanager sends a whole group in one body (about 1 KB an alert) and drops a group
# answered 413 as unrecoverable; its receivers' `max_alerts` keeps a group smaller
ALERTMANAGER_BODY_BYTES = 16 * 1024 * 1024
# no field any hook reads holds a number this long; Python refuses over 4,300 digits anyway
MAX_INTEGER_DIGITS = 64


class Hook(StrEnum):
    CRON = "cron"
    WATCHDOG = "watchdog"
    ALERTMANAGER = "alertmanager"


@dataclass(frozen=True)
class HookSpec:
    hook: Hook
    schema: Schema
    read: Callable[[dict[str, Any]], Verdict]
    # None: the app's limit (Settings.max_body_bytes, 1 MiB)
    max_body_bytes: int | None = None
    allow_empty: bool = False


def pruner() -> Pruner:
    return current_app.extensions["prunehook"]


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise ValueError(f"a number longer than {MAX_INTEGER_DIGITS} digits")
    return int(digits)


def _json_body(allow_empty: bool) -> Any:
    raw = request.get_data(cache=True)
    if not raw.strip():
        if allow_empty:
            return {}
        raise APIError("the body is empty; a JSON object is expected", code="empty_body")
    try:
        body = json.loads(raw, parse_int=_bounded_int)
    except RecursionError as error:
        raise APIError("the body is nested too deeply", code="invalid_json") from error
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, a too long number
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
    value = request.args.get("wait", "0")
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValidationFailed("wait must be 1/true or 0/false", {"wait": [f"not a flag: {value!r}"]})


def _decide(service: Pruner, verdict: Verdict, wait: bool) -> TriggerResult:
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
        body["run"] = run_view(result.run)
    started_in_background = decision.action == Action.STARTED and not wait
    return jsonify(body), 202 if started_in_background else 200


def _run(service: Pruner, spec: HookSpec) -> tuple[Response, int]:
    wait = _wants_wait()
    verdict = spec.read(_load(spec.schema, spec.allow_empty))
    return _answer(service, verdict, _decide(service, verdict, wait), wait)


def _is_server_error(error: Exception) -> bool:
    return not isinstance(error, APIError) or error.status >= 500


def _forget(service: Pruner, delivery_id: str) -> None:
    """The sender retries a 5xx with the same id: that retry must be decided afresh."""
    try:
        service.store.forget_delivery(delivery_id)
    except StoreUnavailable as error:
        log.error("cannot forget delivery %r after a failure: %s", delivery_id, error)


def _handle(spec: HookSpec) -> tuple[Response, int]:
    """Every hook: authenticate, remember a signed delivery, validate, decide, answer."""
    service = pruner()
    if spec.max_body_bytes is not None:
        request.max_content_length = spec.max_body_bytes
    delivery_id = authenticate(service.settings, service.clock())
    if delivery_id is None:
        return _run(service, spec)
    # remembered before validation, so a body refused here is not accepted at another hook
    if not service.store.remember_delivery(
        delivery_id, service.clock(), keep_s=DELIVERY_IDS_KEPT_S
    ):
        duplicate = Verdict(False, str(spec.hook), "a signed delivery")
        decision = Decision(Action.DUPLICATE, "this webhook-id was already received")
        return _answer(service, duplicate, TriggerResult(decision), wait=False)
    try:
        response, status_code = _run(service, spec)
    except Exception as error:
        if _is_server_error(error):
            _forget(service, delivery_id)
        raise
    if status_code >= 500:
        _forget(service, delivery_id)
    return response, status_code


CRON = HookSpec(Hook.CRON, CRON_PING, read_cron, allow_empty=True)
WATCHDOG = HookSpec(Hook.WATCHDOG, WATCHDOG_ALERT, read_watchdog)
ALERTMANAGER = HookSpec(
    Hook.ALERTMANAGER, ALERTMANAGER_WEBHOOK, read_alertmanager, ALERTMANAGER_BODY_BYTES
)


@bp.post("/cron")
def cron() -> tuple[Response, int]:
    return _handle(CRON)


@bp.post("/watchdog")
def watchdog() -> tuple[Response, int]:
    return _handle(WATCHDOG)


@bp.post("/alertmanager")
def alertmanager() -> tuple[Response, int]:
    return _handle(ALERTMANAGER)
