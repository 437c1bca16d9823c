"""The pure parts: durations, sizes, the command, payload readings. No I/O here."""

from __future__ import annotations

import pytest

from webhook.core.command import (
    build_df_command,
    build_keep_storage_command,
    build_prune_command,
)
from webhook.core.duration import DurationError, normalize_until
from webhook.core.outcome import Execution, summarize
from webhook.core.sizes import find_reclaimed, human_size, parse_size
from webhook.core.triggers import read_alertmanager, read_watchdog


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("24h", "24h"),
        ("90m", "90m"),
        ("1h30m", "1h30m"),
        ("1.5h", "1.5h"),
        ("300ms", "300ms"),
        ("7d", "168h"),
        ("2w", "336h"),
        ("1d12h", "36h"),
        (" 48h ", "48h"),
    ],
)
def test_until_is_a_go_duration_with_days_and_weeks_as_hours(raw, expected):
    assert normalize_until(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "24",
        "garbage",
        "24 h",
        "-1h",
        "0s",
        "1y",
        "24h; rm -rf /",
        "$(id)",
        "h",
        "1hh",
        "99999999999h",
        "20000000w",
        "\u0661h",  # an Arabic-Indic one: Python's float() reads it, Go's parser does not
        "\uff12\uff14h",  # fullwidth 24
    ],
)
def test_until_docker_would_reject_is_refused(raw):
    with pytest.raises(DurationError):
        normalize_until(raw)


def test_command_is_exactly_the_builder_prune_with_the_age_filter():
    assert build_prune_command("24h", prune_all=False) == (
        "docker builder prune -f --filter until=24h"
    )


def test_all_flag_only_ever_comes_with_the_age_filter():
    assert build_prune_command("168h", prune_all=True) == (
        "docker builder prune -f -a --filter until=168h"
    )


@pytest.mark.parametrize("until", ["24h; reboot", "24h --all", "", "7d", "\u0661h"])
def test_command_refuses_anything_but_a_go_duration(until):
    with pytest.raises(ValueError):
        build_prune_command(until, prune_all=False)


@pytest.mark.parametrize(
    ("output", "printed", "size"),
    [
        ("Total reclaimed space: 20MB", "20MB", 20_000_000),
        ("Total reclaimed space: 0B\n", "0B", 0),
        (
            "Deleted build cache objects:\nabc\n\nTotal reclaimed space: 11.05GB\n",
            "11.05GB",
            11_050_000_000,
        ),
        ("ID\tRECLAIMABLE\tSIZE\nx1\ttrue\t6.7GB\nTotal:\t6.776GB\n", "6.776GB", 6_776_000_000),
        ("Total reclaimed space: 1.5GiB", "1.5GiB", int(1.5 * 1024**3)),
        ("Total reclaimed space: 512kB", "512kB", 512_000),
        ("Total: 3.2MiB", "3.2MiB", int(3.2 * 1024**2)),
    ],
)
def test_reclaimed_size_parses_in_both_output_formats(output, printed, size):
    assert find_reclaimed(output) == (printed, size)


@pytest.mark.parametrize("output", ["", "no total here", "Total reclaimed space: lots"])
def test_output_without_a_total_has_no_reclaimed_size(output):
    assert find_reclaimed(output) is None


def test_sizes_print_as_docker_prints_them():
    assert parse_size(human_size(11_050_000_000)) == 11_050_000_000
    assert human_size(0) == "0B"
    assert human_size(20_000_000) == "20MB"


def test_nonzero_exit_with_docker_down_is_classified():
    outcome = summarize(
        Execution(1, "", "Cannot connect to the Docker daemon at unix:///x.sock.\n", 0.1)
    )
    assert not outcome.ok
    assert outcome.error_kind == "docker_unavailable"
    assert outcome.error.startswith("rc=1: Cannot connect to the Docker daemon")


def test_failed_connection_keeps_its_kind_and_never_claims_a_reclaim():
    outcome = summarize(Execution(None, "", "", 0.5, "host_key_unknown", "not in known_hosts"))
    assert (outcome.ok, outcome.error_kind, outcome.reclaimed_bytes) == (
        False,
        "host_key_unknown",
        None,
    )


def test_resolved_watchdog_alert_never_prunes():
    alert = {"host": "build-1", "mount": "/", "used_percent": 60.0, "status": "resolved"}
    assert not read_watchdog(alert).wants_prune
    assert read_watchdog(alert | {"status": "firing", "used_percent": 97.5}).wants_prune


def test_alertmanager_prunes_only_for_firing_alerts():
    firing = {"status": "firing", "labels": {"alertname": "DiskFull"}}
    resolved = {"status": "resolved", "labels": {"alertname": "DiskFull"}}
    payload = {"status": "firing", "receiver": "prunehook", "alerts": [resolved, firing]}
    assert read_alertmanager(payload).wants_prune
    assert not read_alertmanager(payload | {"alerts": [resolved]}).wants_prune
    assert not read_alertmanager(payload | {"status": "resolved", "alerts": [resolved]}).wants_prune


def test_an_until_in_days_that_rounds_to_nothing_is_refused_never_zero():
    with pytest.raises(DurationError):
        normalize_until("0.000001d")
    assert normalize_until("0.5d") == "12h"


def test_stage_two_is_exactly_the_builder_prune_bounded_in_bytes():
    assert build_keep_storage_command(5_000_000_000, prune_all=False) == (
        "docker builder prune -f --keep-storage 5000000000"
    )
    assert build_keep_storage_command(0, prune_all=True) == (
        "docker builder prune -f -a --keep-storage 0"
    )


@pytest.mark.parametrize("value", [-1, 2**63, True, 1.5, "10GB"])
def test_stage_two_refuses_a_bound_that_is_no_number_of_bytes(value):
    with pytest.raises(ValueError, match="keep_bytes"):
        build_keep_storage_command(value, prune_all=False)


def test_the_disk_probe_measures_docker_root_in_bytes_and_refuses_other_paths():
    assert build_df_command("/var/lib/docker") == "df -B1 --output=size,avail /var/lib/docker"
    for bad in ("var/lib/docker", "/x; rm -rf /", "/x\n", "/a/../etc", "/$(id)"):
        with pytest.raises(ValueError, match="docker_root"):
            build_df_command(bad)
