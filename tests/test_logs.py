"""Our logging set up in a process that gunicorn also logs from."""

from __future__ import annotations

import logging
import os
from urllib.parse import quote

import pytest
from gunicorn.glogging import Logger as GunicornLogger

from webhook.logs import PLAIN, JsonFormatter, LogLevel, configure_logging, use_level
from webhook.store.postgres import PostgresStore


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


@pytest.mark.parametrize(
    ("formatter", "levels"),
    [
        # the service's own JSON lines: prunehook's debug lines, no other library's
        (JsonFormatter(), (logging.INFO, logging.DEBUG)),
        # the command's (or a test runner's): as it set them
        (PLAIN, (logging.WARNING, logging.NOTSET)),
    ],
)
def test_the_log_level_applies_where_the_service_set_logging_up(monkeypatch, formatter, levels):
    root, ours = logging.getLogger(), logging.getLogger("webhook")
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    monkeypatch.setattr(root, "handlers", [handler])
    kept = root.level, ours.level
    root.setLevel(logging.WARNING)
    ours.setLevel(logging.NOTSET)
    try:
        use_level(LogLevel.DEBUG)
        assert (root.level, ours.level) == levels
    finally:
        root.setLevel(kept[0])
        ours.setLevel(kept[1])


PASSWORD = "s3cr@t-pw"  # in a URL: s3cr%40t-pw


def test_the_drivers_log_lines_never_carry_the_database_password(caplog):
    PostgresStore(f"postgresql://prunehook:{quote(PASSWORD)}@127.0.0.1:1/db").close()
    pool = logging.getLogger("psycopg.pool")
    with caplog.at_level(logging.INFO, logger="psycopg"):
        pool.warning("error connecting in %r: %s", "prunehook", f'bad token: "{quote(PASSWORD)}"')
        pool.warning("error connecting: %s", f"connection to {PASSWORD} failed")
        logging.getLogger("psycopg").info("conninfo: host=h password='other one' dbname=d")
        pool.info("url: postgresql://someone:another-pw@db.example/prunehook")
        try:
            raise ValueError(f"invalid dsn: password={PASSWORD}")
        except ValueError:
            pool.exception("failed")
    shown = caplog.text + "".join(JsonFormatter().format(record) for record in caplog.records)
    for secret in (PASSWORD, quote(PASSWORD), "other one", "another-pw"):
        assert secret not in shown
    assert "bad token" in shown and "ValueError: invalid dsn" in shown
