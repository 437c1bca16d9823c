"""Who may trigger: a bearer token, compared in constant time."""

from __future__ import annotations

import hmac

from flask import request

from .errors import Unauthorized


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


def require_token(expected: str) -> None:
    presented = bearer_token(request.headers.get("Authorization", ""))
    if not token_matches(presented, expected):
        raise Unauthorized("missing or wrong bearer token: send Authorization: Bearer <token>")
