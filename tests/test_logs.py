"""Our logging set up in a process that gunicorn also logs from."""

from __future__ import annotations

import logging
import os

from gunicorn.glogging import Logger as GunicornLogger

from webhook.logs import configure_logging


def test_gunicorn_lines_keep_their_process_id_once_our_logging_is_set_up(monkeypatch):
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # a fresh process: nothing set up yet
    monkeypatch.setattr(root, "level", root.level)
    paramiko = logging.getLogger("paramiko")
    monkeypatch.setattr(paramiko, "level", paramiko.level)
    configure_logging()
    record = logging.getLogger("gunicorn.error").makeRecord(
        "gunicorn.error", logging.INFO, "", 0, "Worker exiting (pid: %s)", (os.getpid(),), None
    )
    line = logging.Formatter(GunicornLogger.error_fmt, GunicornLogger.datefmt).format(record)
    assert line.endswith(f"[{os.getpid()}] [INFO] Worker exiting (pid: {os.getpid()})")
