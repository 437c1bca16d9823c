"""Who may trigger: a bearer token compared in constant time, or a Standard Webhooks signature.
Who may read: with PRUNEHOOK_STATUS_TOKEN, a token holder alone; a run's output tails, always."""

from __future__ import annotations

import hmac
from collections.abc import Collection

from flask import Blueprint, Request, request

from webhook.config import AuthSettings
from webhook.core.signatures import SignatureError, check_body, check_headers, is_signed
from webhook.web.answers import prefers_html
from webhook.web.context import prunehook
from webhook.web.errors import Unauthorized


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


def presented_token(credentials: Request) -> str | None:
    """The token of `Authorization: Bearer` as the hooks read it, or the password of HTTP
    Basic (any user name)."""
    token = bearer_token(credentials.environ.get("HTTP_AUTHORIZATION", ""))
    if token is not None:
        return token
    given = credentials.authorization  # werkzeug's parse, for Basic only
    return given.password if given is not None and given.type == "basic" else None


def may_read(settings: AuthSettings, presented: str | None, *, tails: bool) -> bool:
    """Pure. Without a status token /status and /metrics are open, as they always were; a
    run's output tails (Docker's versions, socket path, errors) need the hook token then. With
    one, everything needs the status token or the hook token."""
    if not settings.status_token and not tails:
        return True
    # both compared, in constant time each
    matches = [token_matches(presented, token) for token in (settings.status_token, settings.token)]
    return any(matches)


def guard_reading(bp: Blueprint, tails: Collection[str] = ()) -> None:
    """Every route of `bp` admits readers alone (`may_read`); `tails`: the endpoints that show
    a run's output tails."""

    def require_reader() -> None:
        tailed = request.endpoint in tails
        if may_read(prunehook().settings.auth, presented_token(request), tails=tailed):
            return
        raise Unauthorized(
            "missing or wrong token: send Authorization: Bearer <token>, or the token as the"
            " password of HTTP Basic",
            challenge="Basic" if prefers_html() else "Bearer",
        )

    bp.before_request(require_reader)
