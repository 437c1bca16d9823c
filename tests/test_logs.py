"""The log: one JSON object a line, whole, from every thread at once."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading

import pytest

from webhook.logs import JsonFormatter, JsonLineHandler

THREADS, LINES = 8, 300


def logger_writing_to(stream: io.StringIO) -> tuple[logging.Logger, JsonLineHandler]:
    handler = JsonLineHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.Logger("prunehook-test")
    logger.addHandler(handler)
    return logger, handler


@pytest.fixture
def threads_switch_often():
    """Threads handed the interpreter every microsecond, so a line written in two parts
    would be cut by another thread's."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def test_lines_logged_by_many_threads_at_once_are_each_one_whole_json_object(
    threads_switch_often,
):
    stream = io.StringIO()
    logger, _ = logger_writing_to(stream)
    start = threading.Barrier(THREADS)

    def log_many(thread: int) -> None:
        start.wait()
        for number in range(LINES):
            logger.warning("line %d", number, extra={"fields": {"thread": thread, "n": number}})

    threads = [threading.Thread(target=log_many, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = stream.getvalue().splitlines()
    seen = sorted((entry["thread"], entry["n"]) for entry in map(json.loads, lines))
    assert seen == [(t, n) for t in range(THREADS) for n in range(LINES)]


def test_a_filtered_record_writes_nothing_and_a_record_that_cannot_be_formatted_no_crash():
    stream = io.StringIO()
    logger, handler = logger_writing_to(stream)
    handler.addFilter(lambda record: record.levelno >= logging.ERROR)
    logger.warning("dropped")
    reported: list[logging.LogRecord] = []
    handler.handleError = reported.append  # type: ignore[method-assign]
    logger.error("%d", "not a number")  # the message cannot be made
    logger.error("kept")
    assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == ["kept"]
    assert [record.msg for record in reported] == ["%d"]
