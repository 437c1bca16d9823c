"""Structured logs: one JSON object per line.

Events carry their fields in `extra={"fields": {...}}`. Nothing that is a secret
is ever passed in: tokens, keys and signatures stay out of every field.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable

# the loggers of the PostgreSQL driver and its pool: libpq's messages, which they repeat on
# every retry, may quote a piece of the database URL, password included
DRIVER_LOGGERS = ("psycopg", "psycopg.pool")
MASK = "***"
# a URL's `user:password@` and a conninfo string's `password=...`
_URL_PASSWORD = re.compile(r"(?<=://)([^:/@\s]*):[^/\s]*@")
_CONNINFO_PASSWORD = re.compile(r"\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        second = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        entry = {
            "ts": f"{second}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:  # a traceback already masked (PasswordMask)
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str)


class PasswordMask(logging.Filter):
    """Masks passwords in a logger's records (message and traceback): any URL's or
    conninfo's, and each password `hide` was given, wherever it appears."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def hide(self, secrets: Iterable[str]) -> None:
        self.secrets.update(secret for secret in secrets if secret)

    def mask(self, text: str) -> str:
        text = _CONNINFO_PASSWORD.sub(f"password={MASK}", _URL_PASSWORD.sub(rf"\1:{MASK}@", text))
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = self.mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, self.mask(text)
        return True


PASSWORDS = PasswordMask()


def mask_database_passwords(*secrets: str) -> None:
    """From now on, the driver's loggers mask `secrets` and any password in a URL."""
    PASSWORDS.hide(secrets)
    for name in DRIVER_LOGGERS:
        logger = logging.getLogger(name)
        if PASSWORDS not in logger.filters:
            logger.addFilter(PASSWORDS)


# for a person at a terminal (the `prunehook` command)
PLAIN = logging.Formatter("prunehook: %(levelname)s: %(message)s")


def configure_logging(
    formatter: logging.Formatter | None = None, level: int = logging.INFO
) -> None:
    """JSON lines on stderr (or `formatter`'s), unless the host process (a test runner, the
    `prunehook` command) already set logging up."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter or JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    # paramiko narrates every connection at INFO; our run line already says what happened
    logging.getLogger("paramiko").setLevel(logging.WARNING)
