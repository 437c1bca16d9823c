"""POST /hooks/{cron,watchdog,alertmanager}: authenticate, validate, decide, answer."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, jsonify, request
from marshmallow import Schema, ValidationError
from werkzeug.exceptions import HTTPException

from webhook.core.decision import Answer
from webhook.core.triggers import Source, Trigger, read_alertmanager, read_cron, read_watchdog
from webhook.service import TriggerOutcome
from webhook.store import StoreUnavailable
from webhook.web import answers
from webhook.web.auth import authenticate
from webhook.web.context import Prunehook, prunehook
from webhook.web.errors import APIError, ValidationFailed
from webhook.web.schemas import (
    MAX_ALERTS,
    WAIT_FLAGS,
    AlertmanagerWebhookSchema,
    CronPingSchema,
    WatchdogAlertSchema,
    answer_of,
)

bp = Blueprint("hooks", __name__, url_prefix="/hooks")
log = logging.getLogger(__name__)
# senders retry a delivery with its id and a fresh timestamp: remember ids well past that
DELIVERY_IDS_KEPT_S = 24 * 3600
# an id whose request never settled (a 5xx, a dead worker) is free again after this: longer
# than any request takes, shorter than a sender's first retry
DELIVERY_PENDING_S = 90
# Alertmanager sends a whole group in one body (about 1 KB an alert) and drops a group
# answered 413 as unrecoverable; its receivers' `max_alerts` keeps a group smaller
ALERTMANAGER_BODY_BYTES = 16 * 1024 * 1024
# no field any hook reads holds a number this long; Python refuses over 4,300 digits anyway
MAX_INTEGER_DIGITS = 64
# a real alert is three JSON objects; a body of far more objects and arrays is no sender's,
# and read whole it would take hundreds of megabytes (millions of `{}` fit in 16 MiB)
MAX_CONTAINERS = 16 * MAX_ALERTS


# reads a validated body: the settings give the host labels, the fleet the ?target= names
Reader = Callable[[dict[str, Any], Prunehook], Trigger]


@dataclass(frozen=True)
class HookSpec:
    source: Source
    # loading is thread-safe and building a schema is not free: one instance each
    schema: Schema
    read: Reader
    # None: the app's limit (ServerSettings.max_body_bytes, 1 MiB)
    max_body_bytes: int | None = None
    allow_empty: bool = False


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise ValueError(f"a number longer than {MAX_INTEGER_DIGITS} digits")
    return int(digits)


def _load(spec: HookSpec) -> dict[str, Any]:
    """The body, parsed and validated by the hook's schema."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if spec.allow_empty:
            return {}  # the common cron ping: nothing to validate
        raise APIError("the body is empty; a JSON object is expected", code="empty_body")
    if raw.count(b"{") + raw.count(b"[") > MAX_CONTAINERS:  # braces in strings count too
        why = f"the body holds more than {MAX_CONTAINERS} JSON objects and arrays"
        raise APIError(why, code="invalid_json")
    try:
        body = json.loads(raw, parse_int=_bounded_int)
    except RecursionError as error:
        raise APIError("the body is nested too deeply", code="invalid_json") from error
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, a too long number
        raise APIError(f"the body is not valid JSON: {error}", code="invalid_json") from error
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object", {"_schema": ["not an object"]})
    try:
        return spec.schema.load(body)
    except ValidationError as error:
        messages = error.normalized_messages()
        named = ", ".join(sorted(messages))
        raise ValidationFailed(f"invalid fields: {named}", messages) from error


def _wants_wait() -> bool:
    value = request.args.get("wait", "0")
    if value not in WAIT_FLAGS:
        raise ValidationFailed(
            "wait must be 1/true or 0/false", {"wait": [f"not a flag: {value!r}"]}
        )
    return WAIT_FLAGS[value]


def _answer(outcome: TriggerOutcome, wait: bool) -> tuple[Response, int]:
    """Today's top-level keys (from the item that started, else the first) and `results`."""
    first_index = outcome.first_index
    items = [answer_of(result) for result in outcome.results]
    body: dict[str, Any] = {
        **items[first_index],
        "trigger": outcome.trigger.reason,
        "request_id": outcome.request_id,
        "results": items,
    }
    response = jsonify(body)
    if any(result.answer == Answer.UNAVAILABLE for result in outcome.results):
        # some targets were decided, others not: the sender's retry decides those afresh
        response.headers["Retry-After"] = "5"
        return response, 503
    started_in_background = outcome.answer == Answer.STARTED and not wait
    return response, 202 if started_in_background else 200


def _run(hook: Prunehook, spec: HookSpec, request_id: str | None) -> tuple[Response, int]:
    # PRUNEHOOK_WAIT_FOR_RUN: on platforms that stop a process's CPU once it has answered,
    # a run left in the background would stall
    wait = _wants_wait() or hook.settings.server.wait_for_run
    trigger = spec.read(_load(spec), hook)
    outcome = hook.service.handle(trigger, wait=wait, request_id=request_id)
    return _answer(outcome, wait)


def _is_server_error(error: Exception) -> bool:
    if isinstance(error, APIError | HTTPException):
        status = error.status if isinstance(error, APIError) else error.code
        return status is None or status >= 500
    return True


def _settle(hook: Prunehook, delivery_id: str, server_error: bool) -> None:
    """A 2xx or 4xx answer settles the id (a replay is a duplicate); after a 5xx it is freed
    so the sender's retry is decided afresh. When the database cannot take either, the id
    stays pending and is free again after DELIVERY_PENDING_S: never a lost delivery."""
    store = hook.service.store
    try:
        if server_error:
            store.forget_delivery(delivery_id)
        else:
            store.settle_delivery(delivery_id)
    except StoreUnavailable as error:
        log.error("delivery %r stays pending: %s", delivery_id, error)


def _handle(spec: HookSpec) -> tuple[Response, int]:
    """Every hook: authenticate, take a signed delivery's id, validate, decide, answer."""
    hook = prunehook()
    service = hook.service
    if spec.max_body_bytes is not None:
        request.max_content_length = spec.max_body_bytes
    request_id = answers.request_id()
    delivery_id = authenticate(hook.settings.auth, service.clock(), request)
    if delivery_id is None:
        return _run(hook, spec, request_id)
    # taken before validation, so a body refused here is not accepted at another hook
    taken = service.store.remember_delivery(
        delivery_id, service.clock(), keep_s=DELIVERY_IDS_KEPT_S, pending_s=DELIVERY_PENDING_S
    )
    if not taken:
        duplicate = Trigger(spec.source, False, "a signed delivery")
        return _answer(service.duplicate(duplicate, request_id), wait=False)
    try:
        response, status_code = _run(hook, spec, request_id)
    except Exception as error:
        _settle(hook, delivery_id, _is_server_error(error))
        raise
    _settle(hook, delivery_id, status_code >= 500)
    return response, status_code


def _cron_trigger(body: dict[str, Any], hook: Prunehook) -> Trigger:
    names = request.args.getlist("target")
    fleet = hook.service.fleet
    unknown = fleet.unknown(names)
    if unknown:
        raise ValidationFailed(
            f"?target= names no configured target (known: {fleet.known()})",
            {"target": [f"no target is named {name[:64]!r}" for name in unknown[:10]]},
        )
    return read_cron(body, names)


CRON = HookSpec(Source.CRON, CronPingSchema(), _cron_trigger, allow_empty=True)
WATCHDOG = HookSpec(Source.WATCHDOG, WatchdogAlertSchema(), lambda body, _: read_watchdog(body))
ALERTMANAGER = HookSpec(
    Source.ALERTMANAGER,
    AlertmanagerWebhookSchema(),
    lambda body, hook: read_alertmanager(body, hook.settings.targets.host_labels),
    ALERTMANAGER_BODY_BYTES,
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
