"""What every answer carries, whatever answered it: the request's id and the security headers."""

from __future__ import annotations

import os
import random
import re

from flask import Flask, Response, g, request

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# nothing an answer carries may load, run or frame anything; the page's one <style> block
# is let in by a nonce of its own
LOCKED = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"


def page_policy(nonce: str) -> str:
    return f"{LOCKED}; style-src 'nonce-{nonce}'"


# request ids' own generator: no other code's random.seed() (a test's, a library's) can make
# them repeat, and each forked worker seeds it anew from the system, so no two share a sequence
_IDS = random.Random()  # noqa: S311 (an id, not a secret)
os.register_at_fork(after_in_child=_IDS.seed)


def new_request_id() -> str:
    """32 random hex digits, as uuid4().hex gave, without a system call per request: an id
    only tells requests apart in the logs, so it needs no cryptographic source."""
    return f"{_IDS.getrandbits(128):032x}"


def _assign_request_id() -> None:
    incoming = request.environ.get("HTTP_X_REQUEST_ID")
    g.request_id = incoming if incoming and _REQUEST_ID.match(incoming) else new_request_id()


def _add_headers(response: Response) -> Response:
    # added, not set: no view sets these (the page only its own policy), and in an alert
    # storm every skip pays for each header's search
    headers = response.headers
    if "Content-Security-Policy" not in headers:
        headers.add("Content-Security-Policy", LOCKED)
    headers.add("X-Content-Type-Options", "nosniff")
    request_id = g.get("request_id")
    if request_id is not None:
        headers.add("X-Request-ID", request_id)
    return response


def init_app(app: Flask) -> None:
    app.before_request(_assign_request_id)
    app.after_request(_add_headers)
