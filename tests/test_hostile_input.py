"""Input that once answered 500 or grew what is stored: 4xx JSON, nothing runs, nothing grows."""

from __future__ import annotations

import json

import pytest

from tests.conftest import AUTH
from tests.disk_host import DF, GB, ROOT, DiskHost
from tests.payloads import ALERTMANAGER, WATCHDOG_ALERT, alertmanager_group
from webhook.core.disk import (
    SizeError,
    parse_build_cache,
    parse_configured_size,
    parse_df,
)
from webhook.core.outcome import (
    HOST_INTERVAL_RC,
    ErrorKind,
    Execution,
    RunOutcome,
    summarize,
)
from webhook.core.sizes import BIGINT_MAX, find_reclaimed
from webhook.core.targets import Fleet, PrunePolicy, SSHEndpoint, Target
from webhook.core.triggers import Source, Trigger
from webhook.service import PruneService
from webhook.store import RunRecord
from webhook.store.sqlite import SQLiteStore
from webhook.web.hooks import MAX_CONTAINERS
from webhook.web.schemas import MAX_ALERTS, AlertmanagerWebhookSchema

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


RECEIVER_LENGTH = "Length must be between 1 and 256."


@pytest.mark.parametrize(
    ("path", "payload", "errors"),
    [
        ("/hooks/cron", {"source": "s" * 201}, {"source": ["Longer than maximum length 200."]}),
        (
            "/hooks/watchdog",
            WATCHDOG_ALERT | {"host": ""},
            {"host": ["Length must be between 1 and 253."]},
        ),
        ("/hooks/alertmanager", ALERTMANAGER | {"receiver": ""}, {"receiver": [RECEIVER_LENGTH]}),
        (
            "/hooks/alertmanager",
            ALERTMANAGER | {"receiver": "r" * 257},
            {"receiver": [RECEIVER_LENGTH]},
        ),
    ],
    ids=["long-source", "empty-host", "empty-receiver", "long-receiver"],
)
def test_a_too_long_or_empty_field_gets_the_length_error_alone(client, path, payload, errors):
    response = client.post(path, json=payload, headers=AUTH)
    assert response.status_code == 422
    assert response.get_json()["fields"] == errors


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/hooks/cron", {"source": "nightly\x00"}, "source"),
        ("/hooks/cron", {"source": "\x1b[2Jcleared"}, "source"),
        ("/hooks/watchdog", WATCHDOG_ALERT | {"host": "build-1\x00"}, "host"),
        ("/hooks/watchdog", WATCHDOG_ALERT | {"mount": "/var\nlib"}, "mount"),
        ("/hooks/alertmanager", ALERTMANAGER | {"receiver": "prune\x00hook"}, "receiver"),
        ("/hooks/alertmanager", ALERTMANAGER | {"receiver": "prune\x7f"}, "receiver"),
        ("/hooks/alertmanager", ALERTMANAGER | {"receiver": "prune\x9b"}, "receiver"),
        # a lone surrogate: JSON's "\ud800" escape, which no UTF-8 text (a database's) holds
        ("/hooks/cron", {"source": "nightly\ud800"}, "source"),
        ("/hooks/watchdog", WATCHDOG_ALERT | {"mount": "/var/\udfff"}, "mount"),
        (
            "/hooks/alertmanager",
            ALERTMANAGER | {"alerts": [ALERTMANAGER["alerts"][0] | {"labels": {"host": "b\x00"}}]},
            "alerts",
        ),
    ],
)
def test_a_control_character_in_a_hook_field_is_422_naming_it_and_changes_nothing(
    client, fake_host, path, payload, field
):
    before = client.get("/status").get_data()
    response = client.post(path, json=payload, headers=AUTH)
    assert response.status_code == 422
    assert field in response.get_json()["fields"]
    assert fake_host.commands == []
    assert client.get("/status").get_data() == before


def test_prose_may_span_lines_where_a_sender_writes_it(client, fake_host):
    described = ALERTMANAGER | {
        "commonAnnotations": {"description": "Disk on build-1\nis 97% full.\tAct."}
    }
    answer = client.post("/hooks/alertmanager?wait=1", json=described, headers=AUTH)
    assert answer.status_code == 200
    alert = WATCHDOG_ALERT | {"message": "line one\r\nline two"}
    assert client.post("/hooks/watchdog", json=alert, headers=AUTH).status_code in (200, 202)
    assert len(fake_host.commands) == 1


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


def test_a_group_of_more_alerts_than_any_real_one_is_one_small_422_and_runs_nothing(
    client, fake_host
):
    """Millions of empty alerts fit in 16 MiB; read one by one, each made an error of its own
    (gigabytes, minutes of a worker). Past MAX_ALERTS the count is refused before any."""
    body = ALERTMANAGER | {"alerts": [{}] * (MAX_ALERTS + 1)}
    response = post(client, "/hooks/alertmanager", json.dumps(body).encode())
    assert response.status_code == 422
    assert response.get_json()["fields"] == {
        "alerts": [f"Longer than maximum length {MAX_ALERTS}."]
    }
    assert len(response.get_data()) < 1024
    assert fake_host.commands == []


@pytest.mark.parametrize("path", ["/hooks/alertmanager", "/hooks/watchdog"])
@pytest.mark.parametrize("empty", ["{}", "[]"])
def test_a_body_of_too_many_tiny_objects_is_400_before_it_is_read(client, fake_host, path, empty):
    tiny = ",".join([empty] * (MAX_CONTAINERS + 1))
    body = f'{{"version": "4", "alerts": [{tiny}], "host": "build-1"}}'.encode()
    response = post(client, path, body)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_json"
    assert f"more than {MAX_CONTAINERS} JSON objects" in response.get_json()["message"]
    assert fake_host.commands == []


def test_a_group_of_max_alerts_is_read_whole():
    group = alertmanager_group(1)
    group["alerts"] *= MAX_ALERTS
    assert len(AlertmanagerWebhookSchema().load(group)["alerts"]) == MAX_ALERTS


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


# -- a hostile or broken build host ---------------------------------------------------------

HUGE = "9" * 400  # no float holds it: an infinity once parsed


@pytest.mark.parametrize(
    ("parse", "output"),
    [
        (parse_df, "1B-blocks Avail\n99999999999999999999 99999999999999999999\n"),
        (parse_build_cache, f"Build Cache  9  0  {HUGE}EB  0B\n"),
        (find_reclaimed, "Total reclaimed space: 99999999999EB\n"),
        (find_reclaimed, f"Total:\t{HUGE}GB\n"),
    ],
    ids=["df", "system-df-400-digits", "reclaimed-EB", "buildx-total-400-digits"],
)
def test_a_size_a_host_prints_beyond_2_63_is_clamped_not_an_overflow(parse, output):
    found = parse(output)
    assert found is not None
    sizes = found if parse is parse_df else found[1:]
    assert all(size == BIGINT_MAX for size in sizes)


def test_a_configured_size_beyond_2_63_is_still_refused_not_clamped():
    with pytest.raises(SizeError, match="out of range"):
        parse_configured_size("99999999999999999999TB")


def test_a_hosts_next_allowed_in_a_billion_seconds_is_taken_as_a_week_at_most():
    refusal = "prunehook-guard: last prune 1 s ago; next allowed in 999999999 s\n"
    stage = summarize(Execution(HOST_INTERVAL_RC, "", refusal, 0.01))
    assert stage.error_kind == ErrorKind.HOST_INTERVAL
    assert stage.retry_after_s == 7 * 86400


def run_once(host: DiskHost, store: SQLiteStore) -> RunRecord:
    """One cron run of a target on `host`, waited for; the run as the store keeps it."""
    target = Target("build-1", SSHEndpoint("build-1"), PrunePolicy(docker_root=ROOT))
    service = PruneService(Fleet((target,)), store, host)
    (result,) = service.handle(Trigger(Source.CRON, True, "cron"), wait=True).results
    assert result.run is not None
    return result.run


def hostile_host(**answers: Execution) -> DiskHost:
    host = DiskHost(young=20 * GB, old=10 * GB)
    host.answers.update(answers)
    return host


def test_a_host_printing_sizes_over_2_63_and_nul_in_its_version_still_has_its_run_recorded(
    tmp_path,
):
    df = Execution(0, "1B-blocks Avail\n99999999999999999999 99999999999999999999\n", "", 0.01)
    version = Execution(0, "Server: Docker Engine\n Engine:\n  Version: 28.2\x002\n", "", 0.01)
    cache = Execution(0, "Build Cache  9  0  99999999999EB  0B\n", "", 0.01)
    host = hostile_host(**{DF: df, "docker version": version, "docker system df": cache})
    run = run_once(host, SQLiteStore(tmp_path / "s.db"))
    assert run.result == "ok"  # recorded, not left running until its lease is lost
    assert (run.disk_size, run.disk_free_before, run.cache_before) == (BIGINT_MAX,) * 3
    assert run.docker_version == "28.22"


class RefusingStore(SQLiteStore):
    """A store that cannot take a host's outcome (a bug, or a value no column holds)."""

    def finish(self, target: str, run_id: int, outcome: RunOutcome, now: float) -> bool:
        if outcome.error_kind != ErrorKind.INTERNAL:
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        return super().finish(target, run_id, outcome, now)


def test_an_outcome_the_store_refuses_is_recorded_as_an_internal_failure_not_lost(tmp_path):
    store = RefusingStore(tmp_path / "s.db")
    run = run_once(DiskHost(young=20 * GB), store)
    assert (run.result, run.error_kind) == ("failed", ErrorKind.INTERNAL)
    assert "OverflowError" in (run.error or "")
    record = store.target_record("build-1")
    assert record is not None and record.inflight_run_id is None
