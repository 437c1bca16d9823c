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
from collections.abc import Mapping, Sequence

TOLERANCE_S = 300
SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


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
    """Several secrets may be configured during a rotation, separated by spaces or commas."""
    return [secret_key(part) for part in raw.replace(",", " ").split()]


def sign(key: bytes, message_id: str, timestamp: str, body: bytes) -> str:
    signed = message_id.encode() + b"." + timestamp.encode() + b"." + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def is_signed(headers: Mapping[str, str]) -> bool:
    return any(headers.get(name) for name in HEADERS)


def verify(keys: Sequence[bytes], headers: Mapping[str, str], body: bytes, now: float) -> str:
    """Return the webhook id of a correctly signed, timely request; raise SignatureError."""
    values = {name: (headers.get(name) or "").strip() for name in HEADERS}
    for name, value in values.items():
        if not value:
            raise SignatureError(f"the {name} header is missing")
    if not keys:
        raise SignatureError("signed requests are not accepted: PRUNEHOOK_HMAC_SECRET is unset")
    message_id, timestamp = values["webhook-id"], values["webhook-timestamp"]
    if len(message_id) > 256:
        raise SignatureError("the webhook-id header is too long")
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise SignatureError("webhook-timestamp must be Unix seconds")
    if abs(now - int(timestamp)) > TOLERANCE_S:
        raise SignatureError("webhook-timestamp is more than 5 minutes from now")
    presented = [
        entry.partition(",")[2].encode()
        for entry in values["webhook-signature"].split()
        if entry.startswith("v1,")
    ]
    expected = [sign(key, message_id, timestamp, body).encode() for key in keys]
    if not any(hmac.compare_digest(p, e) for p in presented for e in expected):
        raise SignatureError("no signature in webhook-signature matches")
    return message_id
