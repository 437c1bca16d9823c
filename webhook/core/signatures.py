"""Standard Webhooks signatures: a pure check of headers, body, secrets and time.

`webhook-signature` holds space-separated `v1,<base64>` entries, each an
HMAC-SHA256 over `<webhook-id>.<webhook-timestamp>.<body>`. A request passes
when any entry matches any configured secret (several during a rotation) and
its timestamp is within the tolerance of now.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

TOLERANCE_S = 300
SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)


class Headers(Protocol):
    """Request headers by name: a `Mapping` or werkzeug's `Headers` (which is no Mapping)."""

    def get(self, name: str, /) -> str | None: ...


HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
# a key shorter than this is guessable; the Standard Webhooks libraries generate 24-64 bytes
MIN_KEY_BYTES = 16
MAX_ID_CHARS = 256
# ASCII digits only: str.isdigit() is true for '²', which int() refuses
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")


class SignatureError(Exception):
    """The request is not signed correctly; the message says how, never with a secret."""


def secret_key(secret: str) -> bytes:
    """The HMAC key: whsec_ + base64 is decoded; any other string is its own UTF-8 bytes."""
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except binascii.Error as error:
            raise ValueError("a whsec_ secret must be base64 after the prefix") from error
    return secret.encode()


def parse_secrets(raw: str) -> list[bytes]:
    """Several secrets may be configured during a rotation, separated by spaces or commas.

    Raises ValueError for a secret that is not usable, saying which one (by position only).
    """
    keys = [secret_key(part) for part in raw.replace(",", " ").split()]
    for position, key in enumerate(keys, start=1):
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(
                f"secret {position} is a {len(key)}-byte key; at least {MIN_KEY_BYTES} bytes"
                " are needed (e.g. whsec_ + base64 of 32 random bytes)"
            )
    return keys


def sign(key: bytes, message_id: str, timestamp: str, body: bytes) -> str:
    signed = message_id.encode() + b"." + timestamp.encode() + b"." + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def is_signed(headers: Headers) -> bool:
    return any(headers.get(name) for name in HEADERS)


@dataclass(frozen=True)
class SignedHeaders:
    """The signature headers of a request, well-formed and timely; the body is not checked yet."""

    message_id: str
    timestamp: str
    signatures: tuple[bytes, ...]


def check_headers(keys: Sequence[bytes], headers: Headers, now: float) -> SignedHeaders:
    """What can be refused before the body is read: missing, malformed or stale headers."""
    values = {name: (headers.get(name) or "").strip() for name in HEADERS}
    for name, value in values.items():
        if not value:
            raise SignatureError(f"the {name} header is missing")
    if not keys:
        raise SignatureError("signed requests are not accepted: PRUNEHOOK_HMAC_SECRET is unset")
    message_id, timestamp = values["webhook-id"], values["webhook-timestamp"]
    if len(message_id) > MAX_ID_CHARS:
        raise SignatureError("the webhook-id header is too long")
    if not _UNIX_SECONDS.fullmatch(timestamp):
        raise SignatureError("webhook-timestamp must be Unix seconds")
    if abs(now - int(timestamp)) > TOLERANCE_S:
        raise SignatureError("webhook-timestamp is more than 5 minutes from now")
    presented = tuple(
        entry.partition(",")[2].encode()
        for entry in values["webhook-signature"].split()
        if entry.startswith("v1,")
    )
    if not presented:
        raise SignatureError("webhook-signature has no v1 signature")
    return SignedHeaders(message_id, timestamp, presented)


def check_body(keys: Sequence[bytes], signed: SignedHeaders, body: bytes) -> str:
    """Return the webhook id when a presented signature matches the body; raise SignatureError."""
    expected = [sign(key, signed.message_id, signed.timestamp, body).encode() for key in keys]
    if not any(hmac.compare_digest(p, e) for p in signed.signatures for e in expected):
        raise SignatureError("no signature in webhook-signature matches")
    return signed.message_id
