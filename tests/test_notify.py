"""Telegram notification of a large reclaim; a local HTTP server stands in for the API."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import AUTH

BOT_TOKEN = "123456:bot-secret-token"


class TelegramStandIn(ThreadingHTTPServer):
    def __init__(self, status: int = 200):
        self.status = status
        self.received: list[tuple[str, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((self.path, json.loads(body)))
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}')

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def telegram():
    servers: list[TelegramStandIn] = []

    def start(status: int = 200) -> TelegramStandIn:
        server = TelegramStandIn(status)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def notifying_client(make_app, telegram_server, min_gb: float):
    return make_app(
        notify_min_gb=min_gb,
        telegram_bot_token=BOT_TOKEN,
        telegram_chat_id="-100200300",
        telegram_api_base=telegram_server.base,
    ).test_client()


def test_large_reclaim_is_notified(make_app, telegram):
    server = telegram()
    client = notifying_client(make_app, server, min_gb=1)
    assert client.post("/hooks/cron?wait=1", headers=AUTH).get_json()["run"]["result"] == "ok"
    [(path, message)] = server.received
    assert path == f"/bot{BOT_TOKEN}/sendMessage"
    assert message["chat_id"] == "-100200300"
    assert "1.5GB" in message["text"]


def test_reclaim_below_the_threshold_stays_silent(make_app, telegram):
    server = telegram()
    client = notifying_client(make_app, server, min_gb=2)
    client.post("/hooks/cron?wait=1", headers=AUTH)
    assert server.received == []


def test_failing_telegram_never_fails_the_run_nor_leaks_the_token(make_app, telegram, caplog):
    server = telegram(status=500)
    client = notifying_client(make_app, server, min_gb=1)
    run = client.post("/hooks/cron?wait=1", headers=AUTH).get_json()["run"]
    assert run["result"] == "ok"
    assert len(server.received) == 1
    assert "telegram notification failed: HTTP 500" in caplog.text
    assert BOT_TOKEN not in caplog.text
    assert client.get("/status").get_json()["last_error"] is None
