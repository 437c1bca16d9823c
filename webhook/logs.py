"""Structured logs: one JSON object per line.

Events carry their fields in `extra={"fields": {...}}`. Nothing that is a secret
is ever passed in: tokens, keys and signatures stay out of every field.
"""

from __future__ import annotations

import logging
import sys
import time

from webhook.json_text import encoder

# one encoder for every line: json.dumps with an argument builds a new one per call
_ENCODE = encoder(default=str)


class JsonFormatter(logging.Formatter):
    # (whole second, its text): an alert storm logs many lines a second, each formatted it anew
    _second: tuple[int, str] = (-1, "")

    def _seconds(self, created: float) -> str:
        whole = int(created)
        cached = self._second
        if cached[0] != whole:
            cached = self._second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
        return cached[1]

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": f"{self._seconds(record.created)}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _ENCODE(entry)


def configure_logging() -> None:
    """JSON lines on stderr, unless the host process (a test runner) already set logging up."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # the JSON line shows none of the thread, process name or caller that every record would
    # otherwise look up (the logging HOWTO's "Optimization"): a skip in an alert storm logs one
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    # paramiko narrates every connection at INFO; our run line already says what happened
    logging.getLogger("paramiko").setLevel(logging.WARNING)
