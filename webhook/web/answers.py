"""What every answer carries, whatever answered it: the request's id and the security headers."""

from __future__ import annotations

import re
import uuid

from flask import Flask, Response, g, request

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# nothing an answer carries may load, run or frame anything; the page's one <style> block
# is let in by a nonce of its own
LOCKED = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"


def page_policy(nonce: str) -> str:
    return f"{LOCKED}; style-src 'nonce-{nonce}'"


def request_id() -> str:
    """The caller's X-Request-ID when it is a sane one, else a new one; the same for the
    whole request."""
    if "request_id" not in g:
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
    return g.request_id


def prefers_html() -> bool:
    """A browser's request: JSON for tools (and anything that does not ask otherwise)."""
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


def _add_headers(response: Response) -> Response:
    response.headers["X-Request-ID"] = request_id()
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers.setdefault("Content-Security-Policy", LOCKED)
    return response


def init_app(app: Flask) -> None:
    app.after_request(_add_headers)
