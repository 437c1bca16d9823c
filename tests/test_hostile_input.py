"""Input that once answered 500 or grew what is stored: 4xx JSON, nothing runs, nothing grows."""

from __future__ import annotations

import json

import pytest

from tests.conftest import AUTH
from tests.payloads import ALERTMANAGER, WATCHDOG_ALERT, alertmanager_group

MiB = 1024 * 1024
JSON = AUTH | {"Content-Type": "application/json"}


def no_traceback_logged(caplog) -> bool:
    return not any(record.exc_info for record in caplog.records)


def post(client, path: str, body: bytes):
    return client.post(path, data=body, headers=JSON)


@pytest.mark.parametrize("path", ["/hooks/cron", "/hooks/watchdog", "/hooks/alertmanager"])
@pytest.mark.parametrize(
    "body",
    [
        b"[" * 200_000 + b"]" * 200_000,
        b'{"":' * 200_000 + b"1" + b"}" * 200_000,
        b'{"host": "build-1", "used_percent": ' + b"9" * 5000 + b"}",
        b'{"source": "x", "n": -' + b"1" * 5000 + b"}",
        b'{"host": "build-1", "used_percent": 1' + b"0" * 100 + b"}",
    ],
    ids=["nested-arrays", "nested-objects", "5000-digits", "negative-5000-digits", "101-digits"],
)
def test_deep_nesting_and_huge_integers_are_400_without_a_traceback(
    client, fake_host, caplog, path, body
):
    response = post(client, path, body)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_json"
    assert no_traceback_logged(caplog)
    assert fake_host.commands == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"receiver": "r" * 900_000}, "receiver"),
        ({"receiver": ""}, "receiver"),
        ({"groupKey": "{}:" + "k" * 10_000}, "groupKey"),
        ({"externalURL": "http://am/" + "u" * 10_000}, "externalURL"),
        ({"commonLabels": {"alertname": "x" * 5000}}, "commonLabels"),
        ({"commonLabels": {"nested": {"deep": "object"}}}, "commonLabels"),
        ({"groupLabels": {"n" * 300: "v"}}, "groupLabels"),
        ({"commonAnnotations": {"description": "d" * 70_000}}, "commonAnnotations"),
        ({"alerts": [ALERTMANAGER["alerts"][0] | {"fingerprint": "f" * 100}]}, "alerts"),
        ({"alerts": [ALERTMANAGER["alerts"][0] | {"startsAt": "t" * 100}]}, "alerts"),
        ({"alerts": [ALERTMANAGER["alerts"][0] | {"generatorURL": "g" * 10_000}]}, "alerts"),
        ({"alerts": [ALERTMANAGER["alerts"][0] | {"labels": {"host": "h" * 5000}}]}, "alerts"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_an_over_long_alertmanager_field_is_422_naming_it_and_stores_nothing(
    client, fake_host, change, field
):
    before = client.get("/status").get_data()
    response = client.post("/hooks/alertmanager", json=ALERTMANAGER | change, headers=AUTH)
    assert response.status_code == 422
    assert field in response.get_json()["fields"]
    assert len(response.get_data()) < 4096  # the answer does not echo the value either
    assert fake_host.commands == []
    assert client.get("/status").get_data() == before


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/hooks/watchdog", WATCHDOG_ALERT | {"host": "h" * 254}, "host"),
        ("/hooks/watchdog", WATCHDOG_ALERT | {"mount": "/" + "m" * 4096}, "mount"),
        ("/hooks/watchdog", WATCHDOG_ALERT | {"message": "m" * 2001}, "message"),
        ("/hooks/cron", {"source": "s" * 201}, "source"),
    ],
)
def test_an_over_long_watchdog_or_cron_field_is_422_naming_it(
    client, fake_host, path, payload, field
):
    response = client.post(path, json=payload, headers=AUTH)
    assert response.status_code == 422
    assert field in response.get_json()["fields"]
    assert fake_host.commands == []


def test_status_stays_small_however_long_the_accepted_fields(client, fake_host, clock):
    longest = ALERTMANAGER | {"receiver": "r" * 256, "groupKey": "k" * 8192}
    for _ in range(12):
        client.post("/hooks/alertmanager?wait=1", json=longest, headers=AUTH)
        clock.advance(21600)
    assert len(fake_host.commands) == 12
    assert len(client.get("/status").get_data()) < 64 * 1024


def test_a_group_of_1200_alerts_over_1_mib_is_accepted_and_prunes(client, fake_host):
    body = json.dumps(alertmanager_group(1200)).encode()
    assert len(body) > MiB
    response = post(client, "/hooks/alertmanager?wait=1", body)
    assert response.status_code == 200
    assert response.get_json()["decision"] == "started"
    assert response.get_json()["trigger"].startswith("1200 firing")
    assert len(fake_host.commands) == 1


def _padded_alertmanager(size: int) -> bytes:
    """A valid notification of exactly `size` bytes (an unknown key carries the padding)."""
    bare = json.dumps(ALERTMANAGER | {"padding": ""}).encode()
    return json.dumps(ALERTMANAGER | {"padding": "p" * (size - len(bare))}).encode()


def test_alertmanager_takes_16_mib_and_refuses_more_with_413(client, fake_host):
    assert len(_padded_alertmanager(16 * MiB)) == 16 * MiB
    accepted = post(client, "/hooks/alertmanager", _padded_alertmanager(16 * MiB))
    assert accepted.status_code == 202
    refused = post(client, "/hooks/alertmanager", _padded_alertmanager(16 * MiB + 1))
    assert refused.status_code == 413
    assert refused.get_json()["error"] == "request_entity_too_large"


@pytest.mark.parametrize("path", ["/hooks/cron", "/hooks/watchdog"])
def test_the_small_hooks_still_refuse_over_1_mib_with_413(client, fake_host, path):
    padded = json.dumps(WATCHDOG_ALERT | {"message": "m" * MiB}).encode()
    response = post(client, path, padded)
    assert response.status_code == 413
    assert response.get_json()["error"] == "request_entity_too_large"
    assert fake_host.commands == []
