"""Disk-aware pruning against the real parts: OpenSSH's sshd pinned to prunehook-guard, and a
dockerd whose data root is a small real filesystem (a loop-mounted ext4 image), so that
free space, the build cache and what a prune frees are all real.

The build cache is made by `docker build` of FROM scratch images copying fresh random
bytes, exported to /dev/null: cache only, every record younger than `until`, so the age
prune frees nothing and only stage 2 can.
"""

from __future__ import annotations

import io
import itertools
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import AUTH
from tests.harness import DockerEngine
from tests.harness.small_host import SmallDisk, small_disk_host
from webhook import create_app

MB = 1000**2
BLOB = 20 * MB  # each build leaves about twice this: its context and its copy
AGE_PRUNE = "allowed docker builder prune -f --filter until=24h"


@pytest.fixture(scope="module")
def small_disk(tmp_path_factory) -> Iterator[SmallDisk]:
    """A build host on a 400 MB filesystem: dockerd's data root is all of it."""
    with small_disk_host(tmp_path_factory.mktemp("small-disk"), size_mb=400) as host:
        yield host


@pytest.fixture
def fresh(small_disk, tmp_path):
    """The small disk with no build cache, then `builds` builds of cache on it."""

    def fill(builds: int) -> int:
        small_disk.engine.cli("builder", "prune", "-a", "-f")
        small_disk.engine.fill_build_cache(tmp_path / "context", [BLOB] * builds)
        return small_disk.engine.build_cache_bytes()

    return fill


@pytest.fixture
def real_app(small_disk, env_for, tmp_path):
    def make(**variables: str):
        env_for(small_disk.host, PRUNEHOOK_DOCKER_ROOT=str(small_disk.docker_root), **variables)
        return create_app(instance_path=str(tmp_path / "instance"))

    return make


def prune(app) -> dict:
    response = app.test_client().post("/hooks/cron?wait=1", headers=AUTH)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["run"]


def stored_run(app, run_id: int):
    run = app.extensions["prunehook"].service.store.run(run_id)
    assert run is not None
    return run


def keepsakes(engine: DockerEngine) -> None:
    """An image, a stopped container and a volume: what no prune of cache may touch."""
    content = io.BytesIO()
    with tarfile.open(fileobj=content, mode="w") as archive:
        data = b"keep me\n"
        info = tarfile.TarInfo("hello")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    engine.cli("import", "-", "keepsake:1", stdin=content.getvalue())
    engine.cli("create", "--name", "keepsake-container", "keepsake:1", "/hello")
    engine.cli("volume", "create", "keepsake-volume")


def kept(engine: DockerEngine) -> tuple[str, str, str]:
    return (
        engine.cli("images", "-q", "keepsake:1").strip(),
        engine.cli("ps", "-aq", "--filter", "name=keepsake-container").strip(),
        engine.cli("volume", "ls", "-q", "--filter", "name=keepsake-volume").strip(),
    )


def test_stage_two_prunes_young_cache_under_max_cache_and_nothing_else(small_disk, fresh, real_app):
    engine, disk = small_disk.engine, small_disk.disk
    if not kept(engine)[0]:
        keepsakes(engine)
    before_kept = kept(engine)
    cache = fresh(4)
    assert cache >= 4 * 2 * BLOB
    app = real_app(PRUNEHOOK_MAX_CACHE="50MB")
    free_before = disk.free_bytes()
    logins = small_disk.host.log_path.read_text().count("Accepted publickey")

    run = prune(app)

    free_after = disk.free_bytes()
    # ten probes and stages, one SSH connection
    assert small_disk.host.log_path.read_text().count("Accepted publickey") == logins + 1
    assert (run["result"], run["error"]) == ("ok", None)
    stored = stored_run(app, run["id"])
    stage_1, stage_2 = (step for step in stored.steps if step.name.startswith("stage"))
    assert stage_1.stdout_tail.strip() == "Total reclaimed space: 0B"  # all of it is young
    assert stage_2.command == "docker builder prune -f --keep-storage 50000000"
    assert small_disk.host.prunes_run()[-2:] == [
        AGE_PRUNE,
        "allowed docker builder prune -f --keep-storage 50000000",
    ]
    assert engine.build_cache_bytes() <= 50 * MB
    assert (stored.keep_storage_bytes, stored.goal_met, stored.cache_over_bytes) == (
        50 * MB, True, 0,
    )  # fmt: skip
    assert stored.cache_before is not None and abs(stored.cache_before - cache) < cache * 0.01
    assert stored.cache_after is not None and stored.cache_after <= 50 * MB
    # df's difference, exact: as the run measured it, and as measured here around it
    assert stored.freed_bytes == stored.disk_free_after - stored.disk_free_before
    assert stored.freed_bytes >= cache - 50 * MB - MB
    assert abs(stored.disk_free_before - free_before) <= MB
    assert abs(stored.disk_free_after - free_after) <= MB
    assert kept(engine) == before_kept and all(before_kept)


def test_a_free_space_goal_no_prune_can_reach_is_reported_missed(small_disk, fresh, real_app):
    cache = fresh(2)
    app = real_app(PRUNEHOOK_MIN_FREE="99%")

    run = prune(app)

    stored = stored_run(app, run["id"])
    assert stored.result == "ok"
    assert stored.keep_storage_bytes == 0  # the most stage 2 can do: all unused cache
    assert small_disk.engine.build_cache_bytes() == 0
    assert stored.freed_bytes is not None and stored.freed_bytes >= cache - MB
    assert stored.goal_met is False
    wanted = -(-stored.disk_size * 99 // 100)
    assert stored.free_short_bytes == wanted - stored.disk_free_after > 0
    shown = app.test_client().get("/status").get_json()
    assert shown["last_result"] == "ok"


def test_without_goals_a_run_only_measures_around_the_age_prune(small_disk, fresh, real_app):
    fresh(1)
    app = real_app()

    run = prune(app)

    stored = stored_run(app, run["id"])
    assert small_disk.host.prunes_run()[-1] == AGE_PRUNE
    assert [step.name for step in stored.steps if step.name.startswith("stage")] == ["stage 1"]
    assert stored.goal_met is None and stored.keep_storage_bytes is None
    assert stored.cache_before == stored.cache_after > 0
    assert stored.docker_version is not None and stored.docker_version.startswith("20.10")
    assert stored.notes == ()
    assert stored.disk_size is not None and stored.disk_size < 500 * MB


# What Docker 28 with the buildx plugin prints, from a stand-in (Debian ships no buildx):
# `docker builder prune` is `docker buildx prune`, whose table ends in `Total:\t<size>`,
# and whose `--keep-storage` (an alias of `--reserved-space` since buildx 0.18) warns on
# stderr; `docker buildx du` lists the records, then sums them, shared ones apart. It keeps
# the cache's size in a file and logs the argv it was given.
BUILDX_DOCKER = r"""#!/usr/bin/env python3
import json, sys
from pathlib import Path

state = Path(__file__).with_name("state.json")
cache = json.loads(state.read_text())["cache"]
with Path(__file__).with_name("argv.log").open("a") as log:
    log.write(" ".join(sys.argv[1:]) + "\n")

def human(size):
    value, unit = float(size), "B"
    for bigger in ("kB", "MB", "GB", "TB"):
        if value < 1000:
            break
        value, unit = value / 1000, bigger
    return f"{value:.4g}{unit}"

args = sys.argv[1:]
if args == ["version"]:
    print("Client: Docker Engine - Community\n Version:           28.2.2\n")
    print("Server: Docker Engine - Community\n Engine:\n  Version:          28.2.2")
elif args == ["buildx", "version"]:
    print("github.com/docker/buildx v0.24.0 d0e5e86")
elif args == ["buildx", "inspect"]:
    print("Name:   default\nDriver: docker\n\nNodes:\nName:             default")
    print("Endpoint:         default\nStatus:           running\nBuildKit version: v0.22.0")
    print("GC Policy rule#0:\n All:            false")
    print(" Filters:        type==source.local,type==exec.cachemount,type==source.git.checkout")
    print(" Keep Duration:  48h0m0s\n Max Used Space: 658.8MiB")
    print("GC Policy rule#1:\n All:            true\n Max Used Space: 20GiB")
elif args == ["buildx", "du"]:
    print("ID\t\t\t\t\t\tRECLAIMABLE\tSIZE\t\tLAST ACCESSED")
    print(f"vbcvze8ff9slw4c0dqfmsn1zr\t\t\ttrue \t{human(cache)}\t\t3 hours ago")
    print("rz2zgfcwlfxsxd7d41w2sz2tt\t\t\ttrue \t115.5MB*\t3 hours ago")
    print(f"Shared:\t\t115.5MB\nPrivate:\t\t{human(cache)}")
    print(f"Reclaimable:\t{human(cache + 115_500_000)}\nTotal:\t\t{human(cache + 115_500_000)}")
elif args == ["system", "df"]:
    print("TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE")
    print("Images          3         1         1.2GB     800MB (66%)")
    print(f"Build Cache     42        0         {human(cache)}     {human(cache)}")
elif args[:3] == ["builder", "prune", "-f"]:
    keep = cache
    if args[3:4] == ["--keep-storage"]:
        print("Flag --keep-storage has been deprecated, keep-storage flag has been changed"
              " to reserved-space", file=sys.stderr)
        keep = min(cache, int(args[4]))
    gone = cache - keep
    state.write_text(json.dumps({"cache": keep}))
    if gone:
        print("ID\t\t\t\t\t\tRECLAIMABLE\tSIZE\t\tLAST ACCESSED")
        print(f"vbcvze8ff9slw4c0dqfmsn1zr\t\t\ttrue \t{human(gone)}\t\t3 hours ago")
    print(f"Total:\t{human(gone)}")
else:
    print(f"unknown: {args}", file=sys.stderr)
    sys.exit(1)
"""


TWELVE_GB_CACHE = '{"cache": 12000000000}'


def buildx_stand_in(tmp_path: Path) -> Path:
    """The buildx stand-in `docker`, in a folder of its own with its state: 12 GB of cache."""
    folder = tmp_path / "buildx-docker"
    folder.mkdir()
    docker = folder / "docker"
    docker.write_text(BUILDX_DOCKER)
    docker.chmod(0o755)
    (folder / "state.json").write_text(TWELVE_GB_CACHE)
    return docker


@pytest.fixture
def buildx_host(tmp_path, make_sshd):
    """A build host whose guard runs the buildx stand-in, with 12 GB of cache."""
    docker = buildx_stand_in(tmp_path)
    return make_sshd(docker=str(docker)), docker.parent


def test_buildx_output_and_its_deprecation_warning_through_the_real_sshd(
    buildx_host, env_for, tmp_path
):
    host, folder = buildx_host
    env_for(host, PRUNEHOOK_MAX_CACHE="5GB", PRUNEHOOK_DOCKER_ROOT=str(tmp_path))
    app = create_app(instance_path=str(tmp_path / "instance"))

    run = prune(app)

    stored = stored_run(app, run["id"])
    assert (stored.result, stored.error, stored.rc) == ("ok", None, 0)
    assert (stored.reclaimed, stored.reclaimed_bytes) == ("7GB", 7_000_000_000)
    assert "keep-storage flag has been changed to reserved-space" in stored.stderr_tail
    assert (stored.docker_version, stored.buildx_version) == ("28.2.2", "0.24.0")
    assert (stored.cache_before, stored.cache_after) == (12_000_000_000, 5_000_000_000)
    assert (stored.keep_storage_bytes, stored.goal_met) == (5_000_000_000, True)
    assert host.prunes_run() == [
        AGE_PRUNE,
        "allowed docker builder prune -f --keep-storage 5000000000",
    ]
    assert (folder / "argv.log").read_text().splitlines() == [
        "system df",
        "version",
        "buildx version",
        "builder prune -f --filter until=24h",
        "system df",
        "builder prune -f --keep-storage 5000000000",
        "system df",
    ]


def test_check_shows_the_disk_the_cache_the_stage_two_bound_and_buildkits_gc(
    buildx_host, env_for, tmp_path
):
    host, folder = buildx_host
    env_for(host, PRUNEHOOK_MAX_CACHE="5GB", PRUNEHOOK_DOCKER_ROOT=str(tmp_path))
    app = create_app(instance_path=str(tmp_path / "instance"))

    result = app.test_cli_runner().invoke(args=["check"])

    assert result.exit_code == 0, result.output
    out = result.output
    assert "PASS  docker       Docker 28.2.2 (buildx 0.24.0) answers on the host" in out
    assert f"PASS  disk         {tmp_path}: " in out and " free of " in out
    assert "PASS  cache        build cache 12GB (docker buildx du)" in out
    assert (
        "PASS  stage 2      a goal is missed now (cache at most 5GB): after the age prune,"
        " `docker builder prune -f --keep-storage 5000000000`; the host's prunehook-guard"
        " needs --allow-keep-storage (or --min-keep-storage BYTES)"
    ) in out
    assert (
        "PASS  buildkit gc  docker buildx inspect: rule#0: All: false; Filters:"
        " type==source.local,type==exec.cachemount,type==source.git.checkout; Keep Duration:"
        " 48h0m0s; Max Used Space: 658.8MiB | rule#1: All: true; Max Used Space: 20GiB"
    ) in out
    assert host.prunes_run() == []  # a check prunes nothing
    assert "builder" not in (folder / "argv.log").read_text()


# -- watching and forecasting (DESIGN.md): builds fill the disk while cron pings come --------

FILL_BLOB = 2 * MB  # each build leaves about twice this on the disk
FILL_PAUSE_S = 0.5  # between two builds: about 5 MB/s in all


def build_steadily(engine: DockerEngine, folder: Path, stop: threading.Event) -> list[str]:
    """Builds one after another until `stop`: the disk fills at a steady rate. What failed."""
    failed: list[str] = []
    index = 0
    while not stop.wait(FILL_PAUSE_S):
        index += 1
        try:
            engine.fill_build_cache(folder / str(index), [FILL_BLOB])
        except subprocess.CalledProcessError as error:  # a full disk: the next may fit
            failed.append(error.stderr.decode(errors="replace")[-300:])
    return failed


def test_a_steady_fill_is_pruned_ahead_of_its_forecast_before_min_free_is_crossed(
    small_disk, fresh, real_app, tmp_path
):
    fresh(0)
    start_free = small_disk.disk.free_bytes()
    min_free = start_free - 150 * MB
    app = real_app(
        PRUNEHOOK_MIN_FREE=str(min_free),
        PRUNEHOOK_WATCH_INTERVAL_S="1",
        PRUNEHOOK_FORECAST_WINDOW_S="30",
        PRUNEHOOK_FORECAST_HORIZON_S="20",
        PRUNEHOOK_CRITICAL_INTERVAL_S="5",
    )
    client, service = app.test_client(), app.extensions["prunehook"].service
    (target,) = service.fleet
    assert client.post("/hooks/cron?wait=1", headers=AUTH).get_json()["run"]["result"] == "ok"
    stop = threading.Event()
    with ThreadPoolExecutor(1) as builder:
        building = builder.submit(build_steadily, small_disk.engine, tmp_path / "fill", stop)
        try:
            deadline = time.monotonic() + 90
            forecast_runs: list = []
            while not forecast_runs and time.monotonic() < deadline:
                assert client.post("/hooks/cron", headers=AUTH).status_code == 200
                stop.wait(1)  # a cron ping every second
                runs = service.store.recent_runs(target.name, 20)
                forecast_runs = [r for r in runs if r.trigger == "forecast" and r.result == "ok"]
        finally:
            stop.set()
            building.result(120)
            service.join_all(60)
    assert forecast_runs, [(r.trigger, r.result, r.disk_free_before) for r in runs]
    first = forecast_runs[-1]
    assert first.forecast is not None and first.forecast.fill_rate_bytes_per_s > 0
    assert first.disk_free_before is not None and first.disk_free_before >= min_free
    assert first.keep_storage_bytes is not None  # young cache: stage 1 alone leaves it
    record = service.store.target_record(target.name)
    assert record is not None and record.forecast is not None
    # free space never stays under min_free for more than one sample
    under = [s.disk_free < min_free for s in service.store.samples(target.name, 0.0)]
    assert not any(a and b for a, b in itertools.pairwise(under))
