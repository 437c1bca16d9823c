"""contrib/nginx/prunehook.conf in front of the Procfile's gunicorn: slow clients wait in nginx,
never in gunicorn's threads.

Debian's nginx runs from a temporary folder on loopback ports (no root needed), the site file
as it is but for its two addresses.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TOKEN
from tests.harness import (
    REPO,
    How,
    find_binary,
    free_port,
    operator_environment,
    start_gunicorn,
    wait_for,
)

SITE = REPO / "contrib" / "nginx" / "prunehook.conf"
SLOW_CLIENTS = 64
# between two bytes of a slow client: well inside nginx's 10 s header and body timeouts
DRIBBLE_S = 0.5
SLOW_HEAD = b"POST /hooks/cron HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"x" * 1000
# a sender on a slow link: its head whole, its body a byte at a time
PARTIAL_BODY_HEAD = (
    f"POST /hooks/alertmanager HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
    "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
).encode()


def nginx_config(folder: Path, port: int, upstream_port: int) -> Path:
    """A main config for nginx run from `folder`, with the site file in its http block."""
    site = SITE.read_text()
    assert "listen 80;" in site and "server 127.0.0.1:8000;" in site
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    site = site.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};")
    temp = "\n".join(
        f"    {kind}_temp_path {folder / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # as root nginx would run its worker as `nobody`, which cannot enter a 0700 tmp_path
    user = "user root;" if os.geteuid() == 0 else ""
    config = folder / "nginx.conf"
    config.write_text(
        f"daemon off;\n{user}\nworker_processes 1;\npid {folder / 'nginx.pid'};\n"
        f"error_log {folder / 'error.log'};\nevents {{ worker_connections 1024; }}\n"
        f"http {{\n    access_log off;\n{temp}\n{site}\n}}\n"
    )
    return config


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[int]:
    """The port of nginx, in front of the Procfile's gunicorn (no build host: no_target)."""
    nginx = find_binary("nginx", "/usr/sbin/nginx")
    env = operator_environment(
        PRUNEHOOK_INSTANCE_PATH=str(tmp_path / "instance"),
        PRUNEHOOK_DB_PATH=str(tmp_path / "state.sqlite3"),
        PRUNEHOOK_TOKEN=TOKEN,
        # one worker of 8 threads: with two, one may take every slow client, the other none
        WEB_CONCURRENCY="1",
    )
    served = start_gunicorn(env, how=How.PROCFILE, log_path=tmp_path / "gunicorn.log")
    port = free_port()
    folder = tmp_path / "nginx"
    folder.mkdir()
    config = nginx_config(folder, port, served.port)
    proxy = subprocess.Popen(
        [nginx, "-p", str(folder), "-c", str(config), "-e", str(folder / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        served.wait_until_serving()
        wait_for(lambda: trigger(port)[0] == 200, 30, f"nginx (log: {folder})", proxy)
        yield port
    finally:
        proxy.terminate()
        try:
            proxy.wait(30)
        except subprocess.TimeoutExpired:
            proxy.kill()
            proxy.wait(30)
        served.stop()


def trigger(port: int) -> tuple[int, str, float]:
    """An authenticated POST /hooks/cron: status, decision, seconds from connect to answer."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", "/hooks/cron", b"", {"Authorization": f"Bearer {TOKEN}"})
        response = connection.getresponse()
        decision = json.loads(response.read()).get("decision", "")
    except OSError:
        return 0, "", time.monotonic() - started
    finally:
        connection.close()
    return response.status, decision, time.monotonic() - started


class Slowloris:
    """SLOW_CLIENTS connections: half send a request head a byte at a time, half a whole head
    and then its body a byte at a time, every DRIBBLE_S, until stop()."""

    def __init__(self, port: int):
        self.sockets = [
            socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(SLOW_CLIENTS)
        ]
        self.rounds = 0
        self.closed = 0  # connections the other end gave up on
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._dribble)
        self._thread.start()

    def _dribble(self) -> None:
        pending = [
            bytearray(SLOW_HEAD if number % 2 else PARTIAL_BODY_HEAD + b"{" * 100000)
            for number in range(SLOW_CLIENTS)
        ]
        for number in range(0, SLOW_CLIENTS, 2):  # the whole head at once
            self._send(number, pending, len(PARTIAL_BODY_HEAD) + 1)
        while not self._stop.wait(0 if self.rounds == 0 else DRIBBLE_S):
            for number in range(SLOW_CLIENTS):
                self._send(number, pending, 1)
            self.rounds += 1

    def _send(self, number: int, pending: list[bytearray], size: int) -> None:
        if not pending[number]:
            return
        try:
            self.sockets[number].sendall(pending[number][:size])
        except OSError:
            self.closed += 1
            pending[number].clear()
            return
        del pending[number][:size]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        for connection in self.sockets:
            connection.close()


def test_slow_clients_wait_in_nginx_and_a_trigger_is_answered_as_fast(proxied):
    alone = [trigger(proxied) for _ in range(5)]
    assert {(status, decision) for status, decision, _ in alone} == {(200, "no_target")}
    usual = statistics.median(seconds for _, _, seconds in alone)

    slow = Slowloris(proxied)
    try:
        wait_for(lambda: slow.rounds >= 3, 30, "64 slow clients under way")
        meanwhile = [trigger(proxied) for _ in range(5)]
        still_open = slow.closed == 0
    finally:
        slow.stop()

    assert [seconds for _, _, seconds in meanwhile if seconds >= usual + 1] == []
    assert {(status, decision) for status, decision, _ in meanwhile} == {(200, "no_target")}
    # answered while all 64 still held their connections, not once nginx had closed them
    assert still_open
