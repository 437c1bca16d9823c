"""One JSON error shape for every failure, werkzeug's own included."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from webhook.store import StoreUnavailable
from webhook.web.answers import request_id

log = logging.getLogger(__name__)


class APIError(Exception):
    """An error a client can act on: HTTP status, a short code, and a field -> messages map."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, fields: dict[str, list[str]] | None = None, **kwargs):
        super().__init__(message)
        self.message = message
        self.fields = fields or {}
        self.status = kwargs.get("status", self.status)
        self.code = kwargs.get("code", self.code)


class Unauthorized(APIError):
    status = 401
    code = "unauthorized"

    def __init__(self, message: str, challenge: str = "Bearer"):
        super().__init__(message)
        # the scheme a client is asked for: Basic makes a browser ask its user
        self.challenge = challenge


class ValidationFailed(APIError):
    status = 422
    code = "validation_failed"


def error_response(status: int, code: str, message: str, fields: dict | None = None) -> Response:
    body: dict[str, Any] = {"error": code, "message": message, "request_id": request_id()}
    if fields:
        body["fields"] = fields
    response = jsonify(body)
    response.status_code = status
    return response


def _api_error(error: APIError) -> Response:
    response = error_response(error.status, error.code, error.message, error.fields)
    if isinstance(error, Unauthorized):
        response.headers["WWW-Authenticate"] = f'{error.challenge} realm="prunehook"'
    return response


def _http_error(error: HTTPException) -> Response:
    code = (error.name or "error").lower().replace(" ", "_")
    response = error_response(error.code or 500, code, error.description or error.name)
    if error.code == 405 and error.valid_methods:  # type: ignore[attr-defined]
        response.headers["Allow"] = ", ".join(error.valid_methods)  # type: ignore[attr-defined]
    return response


def _store_unavailable(error: StoreUnavailable) -> Response:
    log.error("database unavailable: %s", error)
    response = error_response(503, "database_unavailable", "state database unavailable; retry")
    response.headers["Retry-After"] = "5"
    return response


def _unexpected(error: Exception) -> Response:
    log.exception("unhandled error")
    return error_response(500, "internal_error", "internal error; see the service log")


def init_app(app: Flask) -> None:
    app.register_error_handler(APIError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(StoreUnavailable, _store_unavailable)
    app.register_error_handler(Exception, _unexpected)
