"""Structured logs: one JSON object per line.

Events carry their fields in `extra={"fields": {...}}`. Nothing that is a secret
is ever passed in: tokens, keys and signatures stay out of every field.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Iterable
from enum import StrEnum

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
        elif record.exc_text:  # a traceback already masked (SecretMask)
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str)


class SecretMask(logging.Filter):
    """Masks secrets in the records of the loggers it guards (message and traceback): any
    URL's or conninfo's password, and each secret `hide` was given, wherever it appears.
    Without `tracebacks`, a record's traceback is left out instead: an exception's text may
    hold a secret in a form no mask knows (a piece of a URL, escaped or encoded)."""

    def __init__(self, tracebacks: bool = True) -> None:
        super().__init__()
        self.tracebacks = tracebacks
        # longest first: a secret that holds a shorter one is masked whole
        self.secrets: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def hide(self, secrets: Iterable[str]) -> None:
        with self._lock:
            found = {*self.secrets, *secrets} - {""}
            self.secrets = tuple(sorted(found, key=len, reverse=True))

    def guard(self, names: Iterable[str]) -> None:
        """Masks these loggers' records from now on, in place of the mask an earlier import
        of this module left there (gunicorn's master imports it; its workers, afresh)."""
        for name in names:
            logger = logging.getLogger(name)
            for old in [f for f in logger.filters if type(f).__qualname__ == "SecretMask"]:
                logger.removeFilter(old)
            logger.addFilter(self)

    def mask(self, text: str) -> str:
        text = _CONNINFO_PASSWORD.sub(f"password={MASK}", _URL_PASSWORD.sub(rf"\1:{MASK}@", text))
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the message: none of them is shown
            message = str(record.msg)
        record.msg, record.args = self.mask(message), None
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, self.mask(text) if self.tracebacks else None
        return True


PASSWORDS = SecretMask()


def mask_database_passwords(*secrets: str) -> None:
    """From now on, the driver's loggers mask `secrets` and any password in a URL."""
    PASSWORDS.hide(secrets)
    PASSWORDS.guard(DRIVER_LOGGERS)


class LogLevel(StrEnum):
    """How much of its own the service logs (PRUNEHOOK_LOG_LEVEL)."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @classmethod
    def _missing_(cls, value: object) -> LogLevel | None:
        # DEBUG as well, as other tools spell it
        return next((level for level in cls if level.value == str(value).lower()), None)

    @property
    def number(self) -> int:
        return logging.getLevelNamesMapping()[self.upper()]


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


def use_level(level: LogLevel) -> None:
    """PRUNEHOOK_LOG_LEVEL, for prunehook's own lines, where the service set logging up (JSON
    lines); a host process's own logging (the command, a test runner) stays as it set it."""
    root = logging.getLogger()
    if any(isinstance(handler.formatter, JsonFormatter) for handler in root.handlers):
        # other libraries' debug lines are theirs to turn on
        root.setLevel(max(level.number, logging.INFO))
        logging.getLogger("webhook").setLevel(level.number)
