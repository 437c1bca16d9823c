"""How gunicorn runs prunehook: the commands README documents, started for real.

`make run` and the Procfile's command are run as an operator runs them (the
Procfile's 0.0.0.0 becomes 127.0.0.1: tests bind loopback only).
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import TOKEN
from tests.harness import (
    REPO,
    Gunicorn,
    How,
    http_call,
    operator_environment,
    start_gunicorn,
    wait_for,
)
from tests.payloads import WATCHDOG_ALERT, alertmanager_group

# a refusal must come within seconds; a master rebooting workers never exits at all
REFUSAL_BOUND_S = 60
COMMANDS = {how.value: how for how in (How.MAKE_RUN, How.PROCFILE)}


def operator_env(tmp_path: Path, **variables: str) -> dict[str, str]:
    """The caller's environment without its PRUNEHOOK_* and gunicorn variables, plus ours."""
    return operator_environment(
        PRUNEHOOK_INSTANCE_PATH=str(tmp_path / "instance"),
        PRUNEHOOK_DB_PATH=str(tmp_path / "state.sqlite3"),
        PRUNEHOOK_TOKEN=TOKEN,
        **variables,
    )


def start(how: str, env: dict[str, str], log: Path) -> Gunicorn:
    return start_gunicorn(env, how=COMMANDS[how], log_path=log)


@pytest.mark.parametrize("how", sorted(COMMANDS))
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PRUNEHOOK_SSH_PORT", "notaport"),
        ("PRUNEHOOK_SSH_KEY_FILE", "/nonexistent/prunehook"),
        ("GUNICORN_REQUEST_READ_TIMEOUT_S", "soon"),
    ],
)
def test_a_config_error_without_a_safe_default_stops_gunicorn_naming_the_variable(
    tmp_path, how, variable, value
):
    log = tmp_path / "gunicorn.log"
    served = start(how, operator_env(tmp_path, **{variable: value}), log)
    try:
        served.process.wait(REFUSAL_BOUND_S)
    except subprocess.TimeoutExpired:
        served.stop()
        pytest.fail(f"`{how}` still running {REFUSAL_BOUND_S}s after a bad {variable}")
    assert served.process.returncode != 0
    assert variable in log.read_text()


def test_gunicorn_timeouts_follow_the_prune_timeout_set_in_dot_env(tmp_path):
    (tmp_path / ".env").write_text("PRUNEHOOK_TIMEOUT_S=600\n")
    env = operator_env(tmp_path, PYTHONPATH=str(REPO))
    config = str(REPO / "gunicorn.conf.py")
    shown = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", config, "--print-config", "wsgi:app"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=REFUSAL_BOUND_S,
        check=True,
    )
    effective = dict(
        (name.strip(), value.strip())
        for name, _, value in (line.partition("=") for line in shown.stdout.splitlines())
    )
    assert effective["graceful_timeout"] == "660"
    assert effective["timeout"] == "660"


def test_two_instances_on_one_machine_do_not_share_a_control_socket(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = operator_env(tmp_path, HOME=str(home))
    env.pop("XDG_RUNTIME_DIR", None)
    started = []
    try:
        for name in ("a", "b"):
            served = start("procfile", env, tmp_path / f"{name}.log")
            started.append(served)
            served.wait_until_serving()
        assert not (home / ".gunicorn" / "gunicorn.ctl").exists()
        assert list(home.rglob("*.ctl")) == []
    finally:
        for served in started:
            served.stop()


def test_each_instance_may_ask_for_its_own_control_socket(tmp_path):
    env = operator_env(tmp_path)
    sockets = [tmp_path / "a.ctl", tmp_path / "b.ctl"]
    started = []
    try:
        for path in sockets:
            own = env | {"GUNICORN_CONTROL_SOCKET": str(path)}
            served = start("procfile", own, path.with_suffix(".log"))
            started.append(served)
            served.wait_until_serving()
        # the master opens it from a thread of its own, not before it serves
        wait_for(lambda: all(path.is_socket() for path in sockets), 30, "control sockets")
        assert all(served.process.poll() is None for served in started)
    finally:
        for served in started:
            served.stop()


SLOW_HEAD = b"POST /hooks/cron HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"x" * 200


def dribble(port: int, clients: int, rounds: list[int], stop: threading.Event) -> None:
    """`clients` connections sending a request head a byte a second until `stop` (or its end)."""
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(clients)]
    try:
        for offset in range(len(SLOW_HEAD)):
            for connection in sockets:
                connection.sendall(SLOW_HEAD[offset : offset + 1])
            rounds.append(offset)
            if stop.wait(1):
                return
    finally:
        for connection in sockets:
            connection.close()


def test_slow_clients_do_not_hold_back_a_trigger(tmp_path):
    # one worker: how the kernel spreads 64 connections over two would decide the outcome
    env = operator_env(tmp_path, WEB_CONCURRENCY="1")
    served = start("make-run", env, tmp_path / "run.log")
    port = served.port
    stop_dribbling, rounds = threading.Event(), []
    slow = threading.Thread(target=dribble, args=(port, 64, rounds, stop_dribbling))
    try:
        served.wait_until_serving()
        slow.start()
        wait_for(lambda: len(rounds) >= 3, 60, "64 slow clients under way")

        started = time.monotonic()
        code, body = http_call(f"http://127.0.0.1:{port}/hooks/cron", TOKEN)
        waited = time.monotonic() - started

        # answered while all 64 still hold their connections, not once they gave up
        assert slow.is_alive()
        assert (code, body["decision"]) == (200, "no_target")
        assert waited < 2  # a bound, not a benchmark: stock gthread took 12 s
    finally:
        stop_dribbling.set()
        slow.join(60)
        served.stop()


def test_a_request_whose_body_arrives_later_on_a_kept_alive_connection_is_served(tmp_path):
    served = start("make-run", operator_env(tmp_path), tmp_path / "run.log")
    port = served.port
    alert = json.dumps(WATCHDOG_ALERT).encode()
    head = (
        f"POST /hooks/watchdog HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(alert)}\r\n\r\n"
    ).encode()
    try:
        served.wait_until_serving()
        answers = []
        with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
            for _ in range(2):  # the second on the same connection
                connection.sendall(head + alert[:10])
                time.sleep(0.3)
                connection.sendall(alert[10:])
                response = http.client.HTTPResponse(connection)
                response.begin()
                answers.append((response.status, json.loads(response.read())["decision"]))
                assert not response.will_close
        assert answers == [(200, "no_target")] * 2
    finally:
        served.stop()


def serve_one_worker(tmp_path: Path, **variables: str) -> Gunicorn:
    """`make run` with one worker: which of two a connection reaches would decide nothing."""
    served = start(
        "make-run", operator_env(tmp_path, WEB_CONCURRENCY="1", **variables), tmp_path / "run.log"
    )
    served.wait_until_serving()
    return served


def answer(connection: socket.socket) -> tuple[int, dict[str, str], dict]:
    """The next response on `connection`: status, headers, body (decoded if JSON, else {})."""
    response = http.client.HTTPResponse(connection)
    response.begin()
    body = response.read()
    is_json = response.getheader("Content-Type", "").startswith("application/json")
    return response.status, dict(response.getheaders()), json.loads(body) if is_json else {}


def closed_by_server(connection: socket.socket) -> bool:
    try:
        return connection.recv(1) == b""
    except ConnectionResetError:
        return True


def test_a_request_head_not_in_within_the_read_timeout_is_answered_408_and_closed(tmp_path):
    served = serve_one_worker(tmp_path, GUNICORN_REQUEST_READ_TIMEOUT_S="2")
    try:
        with socket.create_connection(("127.0.0.1", served.port), timeout=30) as connection:
            connection.sendall(SLOW_HEAD)  # and never the rest
            sent = time.monotonic()
            status, _, body = answer(connection)
            waited = time.monotonic() - sent
            assert closed_by_server(connection)
        assert (status, body["error"]) == (408, "request_timeout")
        assert 1.5 < waited < 10  # the deadline is checked once a second
    finally:
        served.stop()


@pytest.mark.parametrize("ends", [False, True], ids=["never-ends", "ends-too-late"])
def test_a_request_head_over_64_kib_is_answered_431_and_closed(tmp_path, ends):
    served = serve_one_worker(tmp_path)
    head = b"POST /hooks/cron HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Padding: x\r\n" * 5000
    try:
        with socket.create_connection(("127.0.0.1", served.port), timeout=30) as connection:
            connection.sendall(head + (b"\r\n" if ends else b""))
            sent = time.monotonic()
            status, _, body = answer(connection)
            waited = time.monotonic() - sent
            assert closed_by_server(connection)
        assert status == 431
        if not ends:  # refused by the main loop; a head that ends is refused by gunicorn's parser
            assert body["error"] == "request_header_fields_too_large"
        assert waited < 5
    finally:
        served.stop()


def test_a_chunked_request_is_refused_411_at_once_and_closed(tmp_path):
    served = serve_one_worker(tmp_path)
    head = (
        f"POST /hooks/cron HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    try:
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as connection:
            connection.sendall(head + b"2\r\n{}")  # the rest of the chunked body never comes
            sent = time.monotonic()
            status, headers, body = answer(connection)
            waited = time.monotonic() - sent
            assert closed_by_server(connection)
        assert (status, body["error"]) == (411, "length_required")
        assert headers["Connection"] == "close"
        assert waited < 2
    finally:
        served.stop()


def timed_trigger(port: int) -> tuple[int, str, float]:
    """An authenticated POST /hooks/cron: status, decision, seconds from connect to answer."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", "/hooks/cron", b"", {"Authorization": f"Bearer {TOKEN}"})
        response = connection.getresponse()
        decision = json.loads(response.read())["decision"]
    finally:
        connection.close()
    return response.status, decision, time.monotonic() - started


def read_response(reader) -> tuple[bytes, dict]:
    """The next response from `reader` (a socket's makefile("rb")), read raw, so an interim
    response is seen rather than skipped: its status line and JSON body."""
    status_line = reader.readline()
    length = 0
    while (line := reader.readline()) != b"\r\n":
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status_line, json.loads(reader.read(length)) if length else {}


def test_a_client_expecting_100_continue_gets_it_from_the_main_loop_and_holds_no_thread(tmp_path):
    served = serve_one_worker(tmp_path, GUNICORN_THREADS="1")
    alert = json.dumps(WATCHDOG_ALERT).encode()
    head = (
        f"POST /hooks/watchdog HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(alert)}\r\n"
        "Expect: 100-continue\r\n\r\n"
    ).encode()
    try:
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as waiting:
            waiting.sendall(head)
            reader = waiting.makefile("rb")
            assert reader.readline() == b"HTTP/1.1 100 Continue\r\n"
            assert reader.readline() == b"\r\n"

            # its body not sent yet, it holds no thread: the only one answers a trigger
            status, decision, seconds = timed_trigger(served.port)
            assert (status, decision) == (200, "no_target")
            assert seconds < 2

            waiting.sendall(alert)
            status_line, body = read_response(reader)  # the answer, no second 100 before it
        assert status_line == b"HTTP/1.1 200 OK\r\n"
        assert body["decision"] == "no_target"
    finally:
        served.stop()


def post_head(path: str, length: int, *fields: str) -> bytes:
    """An authenticated JSON POST's head declaring `length` body bytes."""
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Authorization: Bearer {TOKEN}",
        "Content-Type: application/json",
        f"Content-Length: {length}",
        *fields,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_the_worker_reads_whole_the_largest_body_a_hook_takes():
    import gunicorn_worker
    from webhook.web.hooks import ALERTMANAGER_BODY_BYTES

    assert gunicorn_worker.BODY_LIMIT == ALERTMANAGER_BODY_BYTES
    assert gunicorn_worker.BODY_BUDGET >= 4 * gunicorn_worker.BODY_LIMIT


def test_an_alertmanager_body_over_1_mib_sent_slowly_holds_no_thread(tmp_path):
    served = serve_one_worker(tmp_path, GUNICORN_THREADS="1")
    group = json.dumps(alertmanager_group(2400)).encode()
    assert len(group) > 2 * 1024 * 1024
    try:
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as slow:
            slow.sendall(
                post_head("/hooks/alertmanager", len(group)) + group[: 3 * len(group) // 4]
            )
            time.sleep(0.5)  # for the worker to read what came

            # 1.5 MiB in, the rest to come: the only thread answers a trigger meanwhile
            status, decision, seconds = timed_trigger(served.port)
            assert (status, decision) == (200, "no_target")
            assert seconds < 2

            slow.sendall(group[3 * len(group) // 4 :])
            status, _, body = answer(slow)
        assert (status, body["decision"]) == (200, "no_target")
    finally:
        served.stop()


def test_a_body_declared_over_16_mib_is_refused_413_at_once(tmp_path):
    served = serve_one_worker(tmp_path)
    try:
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as connection:
            connection.sendall(post_head("/hooks/alertmanager", 16 * 1024 * 1024 + 1) + b"{")
            sent = time.monotonic()
            status, _, body = answer(connection)
            waited = time.monotonic() - sent
            assert closed_by_server(connection)
        assert (status, body["error"]) == (413, "request_entity_too_large")
        assert waited < 2
    finally:
        served.stop()


def test_bodies_past_the_worker_budget_are_refused_503_and_triggers_still_served(tmp_path):
    served = serve_one_worker(tmp_path)
    big = 16 * 1024 * 1024
    holders: list[socket.socket] = []
    try:
        # four bodies of 16 MiB declared, a byte of each sent: the worker's 64 MiB is spoken for
        for _ in range(4):
            holders.append(socket.create_connection(("127.0.0.1", served.port), timeout=10))
            holders[-1].sendall(post_head("/hooks/alertmanager", big) + b"{")
        time.sleep(0.5)
        alert = json.dumps(WATCHDOG_ALERT).encode()
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as refused:
            refused.sendall(post_head("/hooks/watchdog", len(alert)) + alert)
            status, headers, body = answer(refused)
        assert (status, body["error"]) == (503, "service_unavailable")
        assert headers["Retry-After"] == "5"

        status, decision, seconds = timed_trigger(served.port)  # no body: needs no budget
        assert (status, decision) == (200, "no_target")
        assert seconds < 2

        holders.pop().close()  # its 16 MiB is free again
        time.sleep(0.5)
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as served_now:
            served_now.sendall(post_head("/hooks/watchdog", len(alert)) + alert)
            status, _, body = answer(served_now)
        assert (status, body["decision"]) == (200, "no_target")
    finally:
        for holder in holders:
            holder.close()
        served.stop()


def test_a_pipelined_request_whose_body_comes_later_holds_no_thread(tmp_path):
    served = serve_one_worker(tmp_path, GUNICORN_THREADS="1")
    alert = json.dumps(WATCHDOG_ALERT).encode()
    first = post_head("/hooks/cron", 0)
    second = post_head("/hooks/watchdog", len(alert))
    try:
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as pipelining:
            # the second request right behind the first, in the same packet, but not all of it
            pipelining.sendall(first + second + alert[:10])
            time.sleep(0.5)  # for the worker to answer the first

            # the second's body yet to come, the only thread answers a trigger meanwhile
            status, decision, seconds = timed_trigger(served.port)
            assert (status, decision) == (200, "no_target")
            assert seconds < 2

            pipelining.sendall(alert[10:])
            reader = pipelining.makefile("rb")  # one reader: both answers may come in one read
            answers = [read_response(reader) for _ in range(2)]
        assert [(status, body["decision"]) for status, body in answers] == [
            (b"HTTP/1.1 200 OK\r\n", "no_target")
        ] * 2
    finally:
        served.stop()


def test_a_client_that_never_reads_its_answer_holds_a_thread_for_a_bounded_time(tmp_path):
    env = operator_env(tmp_path, GUNICORN_THREADS="1", GUNICORN_REQUEST_READ_TIMEOUT_S="2")
    served = start_gunicorn(
        env, app="tests.wsgi_large_answer:app", workers=1, log_path=tmp_path / "gunicorn.log"
    )
    try:
        served.wait_until_serving()
        with socket.socket() as never_reads:
            never_reads.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            never_reads.connect(("127.0.0.1", served.port))
            never_reads.sendall(b"GET /large HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            time.sleep(0.5)  # the only thread is writing 64 MiB to it, and stuck

            # what a thread may wait on a socket is bounded: by what is left of the request's
            # deadline, at least THREAD_IO_MIN_S
            started = time.monotonic()
            with urllib.request.urlopen(f"{served.base}/healthz", timeout=30) as response:
                assert response.read() == b"ok"
            assert time.monotonic() - started < 15
    finally:
        served.stop()


def test_clients_that_keep_a_closed_connection_open_do_not_stall_the_worker(tmp_path):
    served = serve_one_worker(tmp_path)
    holders: list[socket.socket] = []
    try:
        # answered with `Connection: close`, they neither read nor close: gthread's graceful
        # close waits up to 2 s for each, in the main loop
        for _ in range(8):
            holders.append(socket.create_connection(("127.0.0.1", served.port), timeout=10))
            holders[-1].sendall(
                b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            )
        time.sleep(0.5)

        status, decision, seconds = timed_trigger(served.port)
        assert (status, decision) == (200, "no_target")
        assert seconds < 2
    finally:
        for holder in holders:
            holder.close()
        served.stop()
