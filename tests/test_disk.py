"""The disk's pure parts: reading the probes' output, the goals, the stage-2 bound.

The outputs below are what the tools print (df from coreutils 9.1, `docker system df`,
`docker version` from Debian's docker.io 20.10 and Docker 28, buildx's version line);
the real tools' output goes through the same functions in tests/test_disk_real.py.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhook.core.disk import (
    Assessment,
    FreeGoal,
    Goals,
    Measure,
    SizeError,
    assess,
    keep_storage_bytes,
    parse_build_cache,
    parse_buildx_du,
    parse_buildx_version,
    parse_configured_size,
    parse_df,
    parse_free_goal,
    parse_gc_policy,
    parse_server_version,
    version_before,
)

GB = 1000**3

DF = "   1B-blocks       Avail\n270553174016 80860729344\n"
SYSTEM_DF = (
    "TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE\n"
    "Images          1         1         3B        0B (0%)\n"
    "Containers      1         0         0B        0B\n"
    "Local Volumes   1         0         0B        0B\n"
    "Build Cache     12        0         120MB     120MB\n"
)
# `docker buildx du` as buildx prints it: the records' table, then its summary, whose
# tabwriter pads cells with tabs (the docs render them as spaces)
BUILDX_DU_RECORDS = (
    "ID                                RECLAIMABLE    SIZE          LAST ACCESSED\n"
    "12wgll9os87pazzft8lt0yztp*        true           1.704GB       13 days ago\n"
    "iupsv3it5ubh92aweb7c1wojc*        true           1.297GB       36 minutes ago\n"
    "z8w1y95jn93gvj92jtaj6uhwk         true           318MB         2 weeks ago\n"
)
BUILDX_DU_SHARED = (
    BUILDX_DU_RECORDS
    + "rz2zgfcwlfxsxd7d41w2sz2tt         true           8.224kB*      43 hours ago\n"
    + "Shared:\t\t115.5MB\nPrivate:\t\t10.25GB\nReclaimable:\t10.36GB\nTotal:\t\t10.36GB\n"
)
BUILDX_DU_UNSHARED = BUILDX_DU_RECORDS + "Reclaimable:\t3.319GB\nTotal:\t\t3.319GB\n"
BUILDX_DU_EMPTY = "ID\tRECLAIMABLE\tSIZE\tLAST ACCESSED\nReclaimable:\t0B\nTotal:\t\t0B\n"
VERSION_20 = """Client:
 Version:           20.10.24+dfsg1
 API version:       1.41
 Context:           default
 Experimental:      true

Server:
 Engine:
  Version:          20.10.24+dfsg1
  API version:      1.41 (minimum version 1.12)
 containerd:
  Version:          1.6.20~ds1
"""
VERSION_28 = """Client: Docker Engine - Community
 Version:           28.2.2
 API version:       1.50

Server: Docker Engine - Community
 Engine:
  Version:          28.2.2
  API version:      1.50 (minimum version 1.24)
 containerd:
  Version:          1.7.27
"""


def test_df_gives_the_size_and_the_bytes_available():
    assert parse_df(DF) == (270553174016, 80860729344)


@pytest.mark.parametrize(
    "output",
    [
        "",
        "df: /nonexistent: No such file or directory\n",
        "   1B-blocks       Avail\n",
        "   1B-blocks  Avail\n10 2\n30 4\n",  # two filesystems: which one is Docker's?
        "   1B-blocks  Avail\n100 200\n",  # more available than there is
        "Size Avail\n20G 10G\n",  # not in bytes
    ],
)
def test_df_output_that_is_not_one_filesystem_in_bytes_is_not_read(output):
    assert parse_df(output) is None


def test_system_df_gives_the_build_cache_as_docker_printed_it_and_in_bytes():
    assert parse_build_cache(SYSTEM_DF) == ("120MB", 120 * 1000**2)
    assert parse_build_cache(SYSTEM_DF.replace("120MB     120MB", "11.05GB   9.8GB")) == (
        "11.05GB",
        11_050_000_000,
    )


@pytest.mark.parametrize(
    "output",
    ["", "Cannot connect to the Docker daemon at unix:///x. Is the docker daemon running?\n"],
)
def test_system_df_without_its_table_is_not_read(output):
    assert parse_build_cache(output) is None


def test_buildx_du_gives_the_cache_docker_system_df_would_the_records_not_shared():
    assert parse_buildx_du(BUILDX_DU_SHARED) == ("10.25GB", 10_250_000_000)
    assert parse_buildx_du(BUILDX_DU_SHARED.replace("\t\t", "      ")) == (
        "10.25GB",
        10_250_000_000,
    )


def test_buildx_du_with_nothing_shared_gives_its_total():
    assert parse_buildx_du(BUILDX_DU_UNSHARED) == ("3.319GB", 3_319_000_000)
    assert parse_buildx_du(BUILDX_DU_EMPTY) == ("0B", 0)


@pytest.mark.parametrize(
    "output",
    [
        "",
        "docker: 'buildx' is not a docker command.\nSee 'docker --help'\n",
        "docker: unknown command: docker buildx\n\nRun 'docker --help' for more information\n",
        "ERROR: Cannot connect to the Docker daemon at unix:///var/run/docker.sock.\n",
        BUILDX_DU_RECORDS,  # cut short before its summary
        BUILDX_DU_UNSHARED.replace("Total:\t\t3.319GB", "Total:\t\tlots"),
        # a summary line inside the records is no summary: the last block is read
        "Total:\t\t1GB\n" + BUILDX_DU_RECORDS,
        # half a shared summary: which line is the cache's is not known
        BUILDX_DU_SHARED.replace("Private:\t\t10.25GB\n", ""),
        BUILDX_DU_UNSHARED + "Total:\t\t1GB\n",  # two totals
    ],
)
def test_buildx_du_without_its_summary_is_not_read(output):
    assert parse_buildx_du(output) is None


def test_the_engines_version_is_the_servers_not_the_clients():
    assert parse_server_version(VERSION_20) == "20.10.24+dfsg1"
    assert parse_server_version(VERSION_28) == "28.2.2"
    client_only = VERSION_28.split("\n\n")[0]  # the daemon did not answer
    assert parse_server_version(client_only) is None


def test_buildx_version_is_read_from_its_line_and_absent_without_buildx():
    assert parse_buildx_version("github.com/docker/buildx v0.18.0 5b8fd0e\n") == "0.18.0"
    assert parse_buildx_version("github.com/docker/buildx 0.13.1+ds1 0.13.1+ds1\n") == (
        "0.13.1+ds1"
    )
    assert parse_buildx_version("docker: 'buildx' is not a docker command.\n") is None


@pytest.mark.parametrize(
    ("version", "before"),
    [("20.10.24+dfsg1", True), ("28.1.1", True), ("28.2.0", False), ("v29.0.1", False)],
)
def test_versions_compare_by_major_and_minor(version, before):
    assert version_before(version, 28, 2) is before


def test_a_version_that_cannot_be_read_compares_as_unknown():
    assert version_before(None, 28, 2) is None
    assert version_before("dev", 28, 2) is None


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (5_000_000_000, 5_000_000_000),
        ("5000000000", 5_000_000_000),
        ("10GB", 10 * GB),
        ("10gb", 10 * GB),
        ("1.5GB", 1_500_000_000),
        ("10GiB", 10 * 1024**3),
        ("512MiB", 512 * 1024**2),
        (" 200 MB ", 200 * 1000**2),
        ("0", 0),
    ],
)
def test_a_configured_size_is_bytes_or_a_number_with_a_unit(value, size):
    assert parse_configured_size(value) == size


@pytest.mark.parametrize(
    "value",
    ["", "lots", "-1GB", "10 GB extra", "1e9", "10G", True, 1.5, -1, 2**63, "1" * 25],
)
def test_a_configured_size_that_is_none_is_refused(value):
    with pytest.raises(SizeError):
        parse_configured_size(value)


def test_min_free_is_a_size_or_a_percentage_of_the_filesystem():
    assert parse_free_goal("15%") == FreeGoal(percent=15.0)
    assert parse_free_goal("2GB") == FreeGoal(size=2 * GB)
    assert FreeGoal(percent=15.0).bytes_of(1000) == 150
    assert FreeGoal(percent=15.0).bytes_of(None) is None
    assert FreeGoal(percent=10.0).bytes_of(1001) == 101  # rounded up: never short of it
    assert str(FreeGoal(percent=12.5)) == "12.5%"
    assert str(FreeGoal(size=2 * GB)) == "2GB"


@pytest.mark.parametrize("value", ["0%", "100%", "150%", "-5%", "%", "15 %%", "0", "0GB"])
def test_min_free_that_is_no_goal_is_refused(value):
    with pytest.raises(SizeError):
        parse_free_goal(value)


def test_no_goal_means_nothing_to_meet_or_miss():
    assert assess(Goals(), Measure(100, 10, 50)) == Assessment(None)
    assert keep_storage_bytes(Goals(), Measure(100, 10, 50)) is None


def test_goals_met_need_no_second_stage():
    goals = Goals(max_cache=50, min_free=FreeGoal(size=10))
    assert assess(goals, Measure(100, 10, 50)) == Assessment(True, 0, 0)
    assert keep_storage_bytes(goals, Measure(100, 10, 50)) is None


def test_a_cache_over_its_bound_is_pruned_down_to_it():
    goals = Goals(max_cache=30)
    assert assess(goals, Measure(100, 40, 50)) == Assessment(False, None, 20)
    assert keep_storage_bytes(goals, Measure(100, 40, 50)) == 30


def test_too_little_free_space_prunes_the_cache_by_what_is_missing():
    goals = Goals(min_free=FreeGoal(percent=25.0))  # 25 of 100
    assert assess(goals, Measure(100, 10, 50)) == Assessment(False, 15, None)
    assert keep_storage_bytes(goals, Measure(100, 10, 50)) == 35


def test_both_goals_missed_take_the_smaller_bound():
    goals = Goals(max_cache=40, min_free=FreeGoal(size=30))
    assert keep_storage_bytes(goals, Measure(100, 10, 50)) == 30  # free needs 20 more
    assert keep_storage_bytes(goals, Measure(100, 25, 50)) == 40  # max_cache is smaller


def test_a_free_space_goal_no_cache_can_reach_prunes_all_of_it_and_stays_missed():
    goals = Goals(min_free=FreeGoal(size=90))
    assert keep_storage_bytes(goals, Measure(100, 10, 50)) == 0
    assert assess(goals, Measure(100, 60, 0)) == Assessment(False, 30, None)


def test_an_unmeasured_goal_is_unknown_unless_another_is_missed():
    goals = Goals(max_cache=30, min_free=FreeGoal(percent=10.0))
    assert assess(goals, Measure(None, None, 20)) == Assessment(None, None, 0)
    assert assess(goals, Measure(None, None, 50)) == Assessment(False, None, 20)
    assert keep_storage_bytes(goals, Measure(None, None, 50)) == 30


def test_free_space_missed_with_no_cache_left_has_nothing_to_prune():
    assert keep_storage_bytes(Goals(min_free=FreeGoal(size=50)), Measure(100, 10, 0)) is None


def test_free_space_missed_with_the_cache_unknown_has_no_bound_without_max_cache():
    goals = Goals(min_free=FreeGoal(size=50))
    assert assess(goals, Measure(100, 10, None)).met is False
    assert keep_storage_bytes(goals, Measure(100, 10, None)) is None
    bounded = Goals(max_cache=40, min_free=FreeGoal(size=50))
    assert keep_storage_bytes(bounded, Measure(100, 10, None)) == 40


sizes = st.integers(min_value=0, max_value=10**13)


@given(
    size=sizes,
    used_by_others=sizes,
    cache=sizes,
    max_cache=st.none() | sizes,
    min_free=st.none() | st.integers(min_value=1, max_value=10**13),
)
def test_pruning_the_cache_to_the_bound_meets_every_goal_that_can_be_met(
    size, used_by_others, cache, max_cache, min_free
):
    """If BuildKit freed exactly what it pruned, the bound meets both goals, or (when no
    cache is small enough) is 0; and it never keeps more than there is or asks for more."""
    size = max(size, used_by_others + cache)
    free = size - used_by_others - cache
    goals = Goals(max_cache, FreeGoal(size=min_free) if min_free else None)
    bound = keep_storage_bytes(goals, Measure(size, free, cache))
    if assess(goals, Measure(size, free, cache)).met is not False or cache == 0:
        assert bound is None  # nothing missed, or no cache left to prune
        return
    assert bound is not None and 0 <= bound < cache
    after = Measure(size, free + cache - bound, bound)
    reachable = min_free is None or min_free <= free + cache
    assert assess(goals, after).met is True or (not reachable and bound == 0)
    if max_cache is not None:
        assert bound <= max_cache


INSPECT = """Name:          default
Driver:        docker

Nodes:
Name:             default
Status:           running
BuildKit version: v0.22.0
GC Policy rule#0:
 All:            false
 Filters:        type==source.local,type==exec.cachemount
 Keep Duration:  48h0m0s
GC Policy rule#1:
 All:            true
 Max Used Space: 20GiB
Labels:
 org.mobyproject.buildkit.worker.moby.host-gateway-ip: 172.17.0.1
"""


def test_buildkits_gc_rules_are_read_from_buildx_inspect_one_line_each():
    assert parse_gc_policy(INSPECT) == [
        "rule#0: All: false; Filters: type==source.local,type==exec.cachemount;"
        " Keep Duration: 48h0m0s",
        "rule#1: All: true; Max Used Space: 20GiB",
    ]
    assert parse_gc_policy(INSPECT.split("GC Policy")[0]) == []
