"""What every answer carries, whatever answered it: the request's id and the security headers.

Given at the WSGI boundary rather than by Flask's before/after-request hooks: a plain list of
header pairs takes three more for a fraction of what Werkzeug's checked `Headers` and two
hooks cost, and in an alert storm every skip pays it.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from flask import request

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_ENVIRON_KEY = "prunehook.request_id"
# nothing an answer carries may load, run or frame anything; the page's one <style> block
# is let in by a nonce of its own
LOCKED = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
_CSP = "content-security-policy"


class _RequestIds:
    """Request ids from a generator of their own, so that no other code's random.seed() (a
    test's, a library's) makes them repeat, seeded anew from the system in every process a
    fork made (by Python's os.fork or a server's own, as uWSGI's), so that no two workers
    share a sequence."""

    def __init__(self) -> None:
        self._random = random.Random()  # noqa: S311 (an id, not a secret)
        self._pid = os.getpid()

    def new(self) -> str:
        pid = os.getpid()
        if pid != self._pid:
            self._random.seed()
            self._pid = pid
        return f"{self._random.getrandbits(128):032x}"


_IDS = _RequestIds()


def page_policy(nonce: str) -> str:
    return f"{LOCKED}; style-src 'nonce-{nonce}'"


def new_request_id() -> str:
    """32 random hex digits (uuid4().hex's length and alphabet) without reading the system's
    random source per request: an id only tells requests apart in the logs, so it needs no
    cryptographic one."""
    return _IDS.new()


def request_id(environ: WSGIEnvironment | None = None) -> str | None:
    """The id of the request being answered (or of the one `environ` describes): the
    caller's X-Request-ID when it is a sane one, else a new one (None only for a request
    made up without the middleware)."""
    given: str | None = (request.environ if environ is None else environ).get(_ENVIRON_KEY)
    return given


class AnswerHeaders:
    """WSGI middleware: an id for each request, and on each answer that id, `nosniff` and a
    locked-down Content-Security-Policy (unless the answer brings its own: the page)."""

    def __init__(self, app: WSGIApplication):
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        incoming = environ.get("HTTP_X_REQUEST_ID")
        given = incoming if incoming and _REQUEST_ID.fullmatch(incoming) else new_request_id()
        environ[_ENVIRON_KEY] = given

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            added = [("X-Content-Type-Options", "nosniff"), ("X-Request-ID", given)]
            if not any(name.lower() == _CSP for name, _ in headers):
                added.insert(0, ("Content-Security-Policy", LOCKED))
            return start_response(status, headers + added, exc_info)

        return self.app(environ, start)
