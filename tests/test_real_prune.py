"""End to end against the real parts: OpenSSH sshd on loopback, a real dockerd, real cache.

The sshd pins prunehook's key to contrib/prunehook-guard, which logs what it is asked
to run: the tests assert what really ran on the host and how much cache is left.
"""

from __future__ import annotations

import json
import time

import paramiko
import pytest

from tests.conftest import AUTH
from webhook import create_app

pytestmark = [pytest.mark.sshd, pytest.mark.dockerd]
CACHE_BYTES = 3_000_000


@pytest.fixture
def real_app(build_host, env_for, tmp_path):
    def make(**variables: str):
        env_for(build_host, **variables)
        return create_app(instance_path=str(tmp_path / "instance"))

    return make


@pytest.fixture
def aged_cache(docker_engine, tmp_path):
    """Fresh BuildKit cache, then two seconds so an `until=1s` filter reaches it."""
    docker_engine.make_build_cache(tmp_path / "context", CACHE_BYTES)
    time.sleep(2)
    return docker_engine.build_cache_bytes()


def test_cron_hook_prunes_real_build_cache_over_ssh(
    real_app, build_host, docker_engine, aged_cache
):
    assert aged_cache >= CACHE_BYTES
    client = real_app(PRUNEHOOK_UNTIL="1s").test_client()

    response = client.post("/hooks/cron?wait=1", headers=AUTH)

    assert response.status_code == 200
    run = response.get_json()["run"]
    assert (run["result"], run["rc"], run["error"]) == ("ok", 0, None)
    assert run["reclaimed_bytes"] >= CACHE_BYTES
    assert docker_engine.build_cache_bytes() <= aged_cache - CACHE_BYTES
    assert build_host.prunes_run()[-1] == "allowed docker builder prune -f --filter until=1s"
    shown = client.get("/status").get_json()
    assert shown["last_reclaimed_bytes"] == run["reclaimed_bytes"]
    assert shown["last_error"] is None
    assert shown["in_flight"] is None


def test_age_filter_keeps_young_cache(real_app, build_host, docker_engine, tmp_path):
    docker_engine.make_build_cache(tmp_path / "young", CACHE_BYTES)
    before = docker_engine.build_cache_bytes()
    client = real_app(PRUNEHOOK_UNTIL="24h").test_client()

    run = client.post("/hooks/cron?wait=1", headers=AUTH).get_json()["run"]

    assert (run["result"], run["reclaimed"]) == ("ok", "0B")
    assert docker_engine.build_cache_bytes() == before
    assert build_host.prunes_run()[-1] == "allowed docker builder prune -f --filter until=24h"


def test_all_flag_prunes_shared_cache_too(real_app, build_host, docker_engine, aged_cache):
    client = real_app(PRUNEHOOK_UNTIL="1s", PRUNEHOOK_ALL="true").test_client()

    run = client.post("/hooks/watchdog?wait=1", headers=AUTH, json={
        "host": "build-1", "used_percent": 99,
    }).get_json()["run"]  # fmt: skip

    assert run["result"] == "ok"
    assert docker_engine.build_cache_bytes() == 0
    assert build_host.prunes_run()[-1] == "allowed docker builder prune -f -a --filter until=1s"


def test_cli_prune_and_status_against_the_real_host(real_app, build_host):
    app = real_app(PRUNEHOOK_UNTIL="24h")
    runner = app.test_cli_runner()

    pruned = runner.invoke(args=["prune"])
    assert pruned.exit_code == 0, pruned.output
    said, hint = pruned.output.splitlines()
    assert said.startswith("127.0.0.1: pruned: freed ")
    # the cache is fresh: under until=24h nothing goes, and the operator is told why
    assert hint.strip().startswith("nothing was older than until=24h: fresh cache stays.")

    skipped = runner.invoke(args=["prune"])
    assert skipped.exit_code == 0
    assert "127.0.0.1: skipped: interval not due yet; next allowed in " in skipped.output

    forced = runner.invoke(args=["prune", "--force", "--json"])
    assert forced.exit_code == 0
    assert json.loads(forced.output)["decision"] == "started"

    shown = runner.invoke(args=["status"])
    assert shown.exit_code == 0
    assert shown.output.splitlines()[1].split()[:2] == ["127.0.0.1", "ok"]


def test_guard_denies_anything_but_the_prune(build_host):
    client = paramiko.SSHClient()
    client.load_host_keys(str(build_host.known_hosts))
    client.connect(
        "127.0.0.1",
        port=build_host.port,
        username="root",
        key_filename=str(build_host.client_key),
        allow_agent=False,
        look_for_keys=False,
        timeout=10,
    )
    try:
        for hostile in (
            "rm -rf /",
            "docker builder prune -f --filter until=24h; rm -rf /",
            "rm -rf /\nallowed docker builder prune -f --filter until=24h",
        ):
            _, stdout, stderr = client.exec_command(hostile, timeout=10)
            assert stdout.channel.recv_exit_status() == 126
            assert "denied" in stderr.read().decode()
    finally:
        client.close()
    assert build_host.commands_run()[-3:] == [
        "denied rm -rf /",
        "denied docker builder prune -f --filter until=24h; rm -rf /",
        "denied rm -rf /\\x0aallowed docker builder prune -f --filter until=24h",
    ]


def test_guard_with_its_defaults_keeps_a_stolen_key_from_wiping_all_cache(
    make_sshd, docker_engine, env_for, aged_cache, tmp_path
):
    host = make_sshd(docker_host=docker_engine.host, guard_options=())
    env_for(host, PRUNEHOOK_UNTIL="1s", PRUNEHOOK_ALL="true")
    client = create_app(instance_path=str(tmp_path / "instance")).test_client()

    run = client.post("/hooks/cron?wait=1", headers=AUTH).get_json()["run"]

    assert (run["result"], run["rc"]) == ("failed", 126)
    assert "prunehook-guard --allow-all" in run["error"]
    assert docker_engine.build_cache_bytes() == aged_cache
    assert host.prunes_run() == ["denied docker builder prune -f -a --filter until=1s"]

    env_for(
        host, PRUNEHOOK_UNTIL="1s", PRUNEHOOK_ALL="false", PRUNEHOOK_DB_PATH=str(tmp_path / "b")
    )
    client = create_app(instance_path=str(tmp_path / "again")).test_client()
    run = client.post("/hooks/cron?wait=1", headers=AUTH).get_json()["run"]

    assert "prunehook-guard --min-until 1h" in run["error"]
    assert docker_engine.build_cache_bytes() == aged_cache
