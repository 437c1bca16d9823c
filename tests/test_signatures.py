"""Standard Webhooks signed requests: accepted when right, 401 when not, replays run nothing."""

from __future__ import annotations

import base64
import io
import json
import socket
import time

import pytest

from tests.conftest import START, TOKEN
from webhook.config import ConfigError, load_settings
from webhook.core.signatures import sign
from webhook.store import StoreUnavailable
from webhook.web.context import prunehook
from webhook.web.hooks import DELIVERY_PENDING_S

OLD_KEY, NEW_KEY = b"old-secret-key-bytes", b"new-secret-key-bytes"
OLD = "whsec_" + base64.b64encode(OLD_KEY).decode()
NEW = "whsec_" + base64.b64encode(NEW_KEY).decode()
BODY = json.dumps({"host": "build-1", "used_percent": 95}).encode()


def signed_headers(*keys: bytes, message_id: str = "msg_1", timestamp: float = START) -> dict:
    stamp = str(int(timestamp))
    signatures = " ".join(f"v1,{sign(key, message_id, stamp, BODY)}" for key in keys)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": stamp,
        "webhook-signature": signatures,
        "Content-Type": "application/json",
    }


@pytest.fixture
def signed_client(make_app):
    return make_app(hmac_secret=NEW).test_client()


def post(client, headers, body: bytes = BODY):
    return client.post("/hooks/watchdog", data=body, headers=headers)


def test_correctly_signed_request_starts_a_prune(signed_client, fake_host):
    response = post(signed_client, signed_headers(NEW_KEY))
    assert response.status_code == 202
    assert response.get_json()["decision"] == "started"


def test_during_a_rotation_any_matching_signature_or_secret_is_accepted(make_app, fake_host):
    client = make_app(hmac_secret=NEW).test_client()
    assert post(client, signed_headers(OLD_KEY, message_id="msg_0")).status_code == 401
    assert post(client, signed_headers(OLD_KEY, NEW_KEY)).status_code == 202
    prunehook(client.application).join_all(10)
    both = make_app(hmac_secret=f"{OLD} {NEW}").test_client()
    response = post(both, signed_headers(OLD_KEY, message_id="msg_2"))
    # authenticated and decided: the prune of msg_1 holds the interval
    assert (response.status_code, response.get_json()["decision"]) == (200, "skipped")
    assert len(fake_host.commands) == 1


@pytest.mark.parametrize(
    ("offset_s", "accepted"), [(-299, True), (299, True), (-301, False), (301, False)]
)
def test_a_signed_timestamp_is_accepted_within_five_minutes_either_side_of_now(
    signed_client, fake_host, clock, offset_s, accepted
):
    # signed with its own timestamp: only the window can refuse it
    response = post(signed_client, signed_headers(NEW_KEY, timestamp=clock.now + offset_s))
    assert response.status_code == (202 if accepted else 401)
    prunehook(signed_client.application).join_all(10)
    assert len(fake_host.commands) == int(accepted)


def test_replayed_webhook_id_is_a_duplicate_and_runs_nothing(signed_client, fake_host, clock):
    assert post(signed_client, signed_headers(NEW_KEY)).status_code == 202
    signed_client.application.extensions["prunehook"].join_all(10)
    clock.advance(60)
    replay = post(signed_client, signed_headers(NEW_KEY))
    assert (replay.status_code, replay.get_json()["decision"]) == (200, "duplicate")
    clock.advance(21600)  # a retry with a fresh timestamp, after the interval has passed
    retry = post(signed_client, signed_headers(NEW_KEY, timestamp=clock.now))
    assert (retry.status_code, retry.get_json()["decision"]) == (200, "duplicate")
    assert len(fake_host.commands) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"webhook-signature": "v1,AAAA"},
        {"webhook-signature": "v2,abc v1"},
        {"webhook-signature": "garbage"},
        {"webhook-signature": "v1,!!!not-base64!!!"},
        {"webhook-timestamp": "yesterday"},
        {"webhook-timestamp": "9" * 40},
        {"webhook-id": ""},
        {"webhook-id": "x" * 300},
    ],
)
def test_malformed_or_wrong_signature_is_401_never_500(signed_client, fake_host, change):
    response = post(signed_client, signed_headers(NEW_KEY) | change)
    assert response.status_code == 401
    assert response.get_json()["error"] == "unauthorized"
    assert fake_host.commands == []


def test_tampered_body_is_401(signed_client, fake_host):
    response = post(signed_client, signed_headers(NEW_KEY), body=BODY.replace(b"95", b"99"))
    assert response.status_code == 401
    assert fake_host.commands == []


def test_signature_with_the_wrong_secret_is_401(signed_client, fake_host):
    assert post(signed_client, signed_headers(OLD_KEY)).status_code == 401


def test_signed_request_without_a_configured_secret_is_401(client, fake_host):
    assert post(client, signed_headers(NEW_KEY)).status_code == 401
    assert fake_host.commands == []


def test_a_whsec_secret_that_is_not_base64_refuses_to_start(monkeypatch):
    monkeypatch.setenv("PRUNEHOOK_HMAC_SECRET", "whsec_***")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert "PRUNEHOOK_HMAC_SECRET" in raised.value.errors
    assert "***" not in str(raised.value)


def no_traceback_logged(caplog) -> bool:
    return not any(record.exc_info for record in caplog.records)


# '\u00b2' is '²' and '\uff11' a fullwidth '1': str.isdigit() says yes to both
@pytest.mark.parametrize("stamp", ["\u00b2", "1800000000\u00b2", "\uff11" * 10, "-18000", "+180"])
def test_timestamp_of_non_ascii_digits_is_401_without_a_traceback(
    signed_client, fake_host, caplog, stamp
):
    response = post(signed_client, signed_headers(NEW_KEY) | {"webhook-timestamp": stamp})
    assert response.status_code == 401
    assert response.get_json()["error"] == "unauthorized"
    assert no_traceback_logged(caplog)
    assert fake_host.commands == []


class WatchedBody(io.BytesIO):
    """The request body, counting how often the app reads from it."""

    reads = 0

    def read(self, *args) -> bytes:
        self.reads += 1
        return super().read(*args)

    def readinto(self, buffer) -> int:
        self.reads += 1
        return super().readinto(buffer)

    def readline(self, *args) -> bytes:
        self.reads += 1
        return super().readline(*args)


@pytest.mark.parametrize(
    "change",
    [
        {"webhook-timestamp": str(int(START) - 3600)},
        {"webhook-timestamp": "soon"},
        {"webhook-signature": ""},
        {"webhook-id": ""},
        {"webhook-signature": "v2,abc"},
    ],
)
def test_missing_or_stale_signature_headers_are_refused_before_the_body_is_read(
    signed_client, fake_host, change
):
    body = WatchedBody(BODY)
    headers = signed_headers(NEW_KEY) | change
    response = signed_client.post("/hooks/watchdog", input_stream=body, headers=headers)
    assert response.status_code == 401
    assert body.reads == 0
    assert fake_host.commands == []


def test_signed_body_refused_at_one_hook_is_a_duplicate_at_another(signed_client, fake_host):
    refused = signed_client.post("/hooks/alertmanager", data=BODY, headers=signed_headers(NEW_KEY))
    assert refused.status_code == 422
    replayed = post(signed_client, signed_headers(NEW_KEY))
    assert (replayed.status_code, replayed.get_json()["decision"]) == (200, "duplicate")
    assert fake_host.commands == []


def test_retry_of_a_delivery_answered_503_is_decided_afresh_and_runs(
    signed_client, fake_host, clock, monkeypatch
):
    store = prunehook(signed_client.application).service.store
    real_claim = store.claim

    def locked_once(*args, **kwargs):
        monkeypatch.setattr(store, "claim", real_claim)
        raise StoreUnavailable("database is locked")

    monkeypatch.setattr(store, "claim", locked_once)
    first = post(signed_client, signed_headers(NEW_KEY))
    assert first.status_code == 503
    assert fake_host.commands == []
    clock.advance(30)  # the sender's retry: same id, fresh timestamp and signature
    retry = post(signed_client, signed_headers(NEW_KEY, timestamp=clock.now))
    assert (retry.status_code, retry.get_json()["decision"]) == (202, "started")
    signed_client.application.extensions["prunehook"].join_all(10)
    assert len(fake_host.commands) == 1


def test_retry_is_decided_afresh_even_when_the_failed_delivery_could_not_be_freed(
    signed_client, fake_host, clock, monkeypatch
):
    store = prunehook(signed_client.application).service.store

    def unavailable(*args, **kwargs):
        raise StoreUnavailable("database is locked")

    with monkeypatch.context() as locked:
        locked.setattr(store, "claim", unavailable)
        locked.setattr(store, "forget_delivery", unavailable)
        assert post(signed_client, signed_headers(NEW_KEY)).status_code == 503
    clock.advance(DELIVERY_PENDING_S + 1)  # the sender's retry, after its backoff
    retry = post(signed_client, signed_headers(NEW_KEY, timestamp=clock.now))
    assert (retry.status_code, retry.get_json()["decision"]) == (202, "started")


@pytest.mark.parametrize(
    "secret",
    ["whsec_", "whsec_" + base64.b64encode(b"x").decode(), "short", f"{NEW} whsec_"],
)
def test_an_empty_or_short_hmac_key_refuses_to_start_naming_the_variable(monkeypatch, secret):
    monkeypatch.setenv("PRUNEHOOK_HMAC_SECRET", secret)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert "PRUNEHOOK_HMAC_SECRET" in raised.value.errors
    assert "16 bytes" in str(raised.value)


def test_an_empty_hmac_secret_variable_still_means_unset(monkeypatch):
    monkeypatch.setenv("PRUNEHOOK_HMAC_SECRET", "")
    settings, _ = load_settings()
    assert settings.auth.hmac_keys == ()


def test_signed_clients_that_never_send_their_body_are_refused_by_real_gunicorn_before_it(
    serve, tmp_path
):
    """Real gunicorn, one worker with two threads: two clients send stale signature headers
    and announce a body they never send. Each gets its 401 while its body is still to come.
    (gunicorn then drains the unsent body for up to 5 s before it frees the thread: slow
    clients are the buffering proxy's to hold, tests/test_nginx.py.)"""
    served = serve(
        {
            "PRUNEHOOK_TOKEN": TOKEN,
            "PRUNEHOOK_HMAC_SECRET": NEW,
            "PRUNEHOOK_DB_PATH": str(tmp_path / "state.sqlite3"),
            "GUNICORN_THREADS": "2",
        },
        workers=1,
    )
    port = int(served.base.rsplit(":", 1)[1])
    stale = signed_headers(NEW_KEY, timestamp=time.time() - 3600)
    head = "".join(f"{name}: {value}\r\n" for name, value in stale.items())
    request = f"POST /hooks/watchdog HTTP/1.1\r\nHost: x\r\n{head}Content-Length: 1000\r\n\r\n"
    clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
    try:
        for client in clients:
            client.sendall(request.encode())
        for client in clients:
            assert client.recv(64).startswith(b"HTTP/1.1 401 "), "answered before the body"
    finally:
        for client in clients:
            client.close()
