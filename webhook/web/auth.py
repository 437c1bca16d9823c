"""Who may trigger: a bearer token compared in constant time, or a Standard Webhooks signature."""

from __future__ import annotations

import hmac

from flask import Request

from webhook.config import AuthSettings
from webhook.web.errors import Unauthorized
from webhook.web.signatures import SignatureError, check_body, check_headers, is_signed


def bearer_token(header: str) -> str | None:
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


def token_matches(presented: str | None, expected: str) -> bool:
    """Pure: an empty expected token never matches, so the hooks are never open."""
    if not expected or presented is None:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def authenticate(settings: AuthSettings, now: float, request: Request) -> str | None:
    """Admit `request` or raise Unauthorized. Returns the webhook id of a signed request.

    Everything that needs no body is refused before the body is read, so a client without
    credentials cannot hold a thread by sending its body slowly.
    """
    authorization = request.environ.get("HTTP_AUTHORIZATION", "")
    if authorization or not is_signed(request.headers):
        if token_matches(bearer_token(authorization), settings.token):
            return None
        raise Unauthorized("missing or wrong bearer token: send Authorization: Bearer <token>")
    try:
        signed = check_headers(settings.hmac_keys, request.headers, now)
        return check_body(settings.hmac_keys, signed, request.get_data(cache=True))
    except SignatureError as error:
        raise Unauthorized(f"bad signature: {error}") from error
