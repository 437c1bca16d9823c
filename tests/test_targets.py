"""The fleet's pure core: the targets file and how an alert's host finds its targets."""

from __future__ import annotations

import tomllib

import pytest

from webhook.core.disk import FreeGoal, Goals
from webhook.core.targets import (
    Fleet,
    TargetsFileError,
    name_for_host,
    normalize_host,
    parse_targets,
)

# the environment's values, below [defaults]
BASE = {"user": "operator", "key_file": "/etc/prunehook/key"}

THREE_HOSTS = """
[defaults]
user = "ci"
until = "7d"
interval_s = 3600

[targets.build-1]
host = "build-1.example"
aliases = ["10.0.0.5", "Build-1.internal"]

[targets.build-2]
host = "build-2.example"
port = 2222
all = true

[targets.build-3]
host = "10.0.0.7"
user = "docker"
"""


def fleet(text: str) -> Fleet:
    return Fleet(parse_targets(tomllib.loads(text), "targets.toml", BASE))


def problems(text: str) -> str:
    with pytest.raises(TargetsFileError) as raised:
        fleet(text)
    assert str(raised.value).startswith("targets.toml: ")
    return str(raised.value)


def test_each_target_takes_its_own_keys_then_the_defaults_then_the_environment():
    one, two, three = fleet(THREE_HOSTS)
    assert (one.name, one.ssh.address, one.ssh.port, one.ssh.user) == (
        "build-1",
        "build-1.example",
        22,
        "ci",
    )
    assert one.ssh.key_file == "/etc/prunehook/key"
    assert one.policy.until == "168h"  # days become hours, as Docker needs
    assert one.policy.interval_s == 3600
    assert (two.ssh.port, two.policy.prune_all) == (2222, True)
    assert (three.ssh.user, three.policy.prune_all) == ("docker", False)


@pytest.mark.parametrize(
    ("host_value", "expected"),
    [
        ("build-1", ["build-1"]),
        ("BUILD-1.example", ["build-1"]),
        ("build-1.example:9100", ["build-1"]),
        ("10.0.0.5:9100", ["build-1"]),
        ("build-1.INTERNAL", ["build-1"]),
        ("10.0.0.7", ["build-3"]),
        ("build-4.example", []),
        ("", []),
    ],
)
def test_an_alert_concerns_the_targets_named_by_name_host_or_alias(host_value, expected):
    assert [target.name for target in fleet(THREE_HOSTS).route(host_value)] == expected


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [("Build-1:22", "build-1"), ("[::1]:22", "::1"), ("::1", "::1"), (" HOST ", "host")],
)
def test_host_values_are_compared_lowercased_without_their_port(raw, normalized):
    assert normalize_host(raw) == normalized


@pytest.mark.parametrize("raw", ["[::1]:", "[::1]:ssh", "[::1]x", "[::1]:\u0662\u0662", "build-1:"])
def test_what_follows_a_host_is_removed_only_when_it_is_a_port(raw):
    assert normalize_host(raw) == raw.lower()


@pytest.mark.parametrize(
    "look_alike", ["\u212a8s-1", "\u212a8S-1.example:22", "k8s-1.examp\u212a", "\u00a0k8s-1"]
)
def test_a_host_value_not_in_ascii_concerns_no_target(look_alike):
    # lowercased, the Kelvin sign would be k; stripped, the no-break space would go
    text = '[targets.k8s-1]\nhost = "k8s-1.example"\n[targets.k8s-10]\nhost = "k8s-1.exampk"'
    assert fleet(text).route(look_alike) == ()


def test_the_environment_target_is_named_after_its_host():
    assert name_for_host("Build-1.Example") == "build-1.example"
    assert name_for_host("::1") == "1"
    assert name_for_host("@@") == "default"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[targets.Build]\nhost = "x"', "targets.Build: a target name must match"),
        ('[targets.a]\nhost = "x"\nport = "22"', "targets.a.port: Not a valid integer"),
        ('[targets.a]\nhost = "x"\nport = 70000', "targets.a.port:"),
        ("[targets.a]\nport = 22", "targets.a.host: Missing data"),
        ('[targets.a]\nhost = "x"\nuntil = "garbage"', "targets.a.until: 'garbage' is not"),
        ('[targets.a]\nhost = "x"\nhots = "typo"', "targets.a.hots: Unknown field"),
        ('[targets.a]\nhost = "x"\ninterval_s = 0', "targets.a.interval_s:"),
        ('[defaults]\nuser = 3\n[targets.a]\nhost = "x"', "defaults.user: Not a valid string"),
        ('[target.a]\nhost = "x"', "target: unknown table"),
        ("[defaults]\nuser = 'ci'", "targets: no [targets.NAME] table"),
        (
            '[targets.a]\nhost = "x"\naliases = ["b"]\n[targets.b]\nhost = "y"',
            "targets.b: 'b' is also a name, host or alias of targets.a",
        ),
    ],
)
def test_a_bad_targets_file_names_the_target_and_the_key(text, named):
    assert named in problems(text)


@pytest.mark.parametrize(
    ("second", "named"),
    [
        # a host that is another target's name
        ('host = "a"', "targets.b.host: 'a' is also a name, host or alias of targets.a"),
        # one address, another port: an alert naming the address would concern both
        ('host = "10.0.0.2"\nport = 2222', "targets.b.host: '10.0.0.2' is also a name, host"),
        ('host = "10.0.0.2"', "targets.b.host: '10.0.0.2' is also a name, host or alias of"),
        # an alias with a port is compared as alerts are routed: without it
        (
            'host = "y"\naliases = ["10.0.0.2:22"]',
            "targets.b.aliases: '10.0.0.2' is also a name, host or alias of targets.a",
        ),
        ('host = "A-Alias.Example"', "targets.b.host: 'a-alias.example' is also a name"),
        ('host = "y"\naliases = ["y", "A"]', "targets.b.aliases: 'a' is also a name, host"),
    ],
)
def test_no_host_value_may_route_to_two_targets(second, named):
    first = '[targets.a]\nhost = "10.0.0.2"\naliases = ["a-alias.example"]\n'
    message = problems(f"{first}[targets.b]\n{second}")
    assert named in message
    assert message.endswith("targets.a")  # one problem, naming both targets


def test_a_target_may_repeat_its_own_name_or_host_as_an_alias():
    text = '[targets.a]\nhost = "10.0.0.2"\naliases = ["A", "10.0.0.2:22", "a.example"]'
    assert [t.name for t in fleet(text).route("10.0.0.2")] == ["a"]


@pytest.mark.parametrize(
    ("line", "named"),
    [
        # the Kelvin sign lowercases to k: it would route "k8s-1" here
        ('host = "\u212a8s-1"', "targets.a.host: must be ASCII"),
        ('host = "x"\naliases = ["ok", "\u212a8s-1.example"]', "targets.a.aliases.1: must be"),
        ('host = "bu\u0456ld-1.example"', "targets.a.host: must be ASCII"),  # a Cyrillic i
    ],
)
def test_a_host_or_alias_that_is_not_ascii_is_refused(line, named):
    message = problems(f'[targets.a]\n{line}\n[targets.k8s-1]\nhost = "k8s-1.example"')
    assert named in message


def test_a_target_name_with_a_trailing_newline_is_refused():
    # a quoted TOML key may hold one; a pattern's `$` matches before it
    message = problems('[targets."build-1\\n"]\nhost = "x"')
    assert "targets.build-1\n: a target name must match" in message


def test_a_target_name_that_is_not_ascii_is_refused():
    message = problems('[targets."\u212a8s-1"]\nhost = "x"')
    assert "targets.\u212a8s-1: a target name must match" in message


def test_every_problem_of_a_file_is_reported_at_once():
    text = '[targets.a]\nhost = "x"\nport = "22"\n[targets.b]\nuntil = "1x"'
    message = problems(text)
    assert "targets.a.port" in message
    assert "targets.b.host" in message
    assert "targets.b.until" in message


DISK_HOSTS = """
[defaults]
max_cache = "10GB"
min_free = "15%"

[targets.small]
host = "small.example"
max_cache = 2000000000
min_free = "5GiB"
critical_percent = 90
critical_interval_s = 600
docker_root = "/srv/docker"

[targets.plain]
host = "plain.example"
"""


def test_disk_keys_are_per_target_with_defaults_and_the_environments_below_them():
    base = BASE | {"critical_percent": 97.0, "docker_root": "/data/docker"}
    small, plain = parse_targets(tomllib.loads(DISK_HOSTS), "targets.toml", base)
    assert (small.policy.max_cache, small.policy.min_free) == (2 * 10**9, FreeGoal(5 * 1024**3))
    assert (small.policy.critical_percent, small.policy.critical_interval_s) == (90, 600)
    assert small.policy.docker_root == "/srv/docker"
    assert (plain.policy.max_cache, plain.policy.min_free) == (10 * 10**9, FreeGoal(percent=15))
    assert (plain.policy.critical_percent, plain.policy.docker_root) == (97.0, "/data/docker")
    assert plain.policy.critical_interval_s == 900


def test_without_disk_keys_a_target_has_no_goal_and_the_documented_defaults():
    policy = fleet('[targets.a]\nhost = "x"').targets[0].policy
    assert policy.goals == Goals()
    assert (policy.critical_percent, policy.critical_interval_s) == (95, 900)
    assert policy.docker_root == "/var/lib/docker"


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ('max_cache = "10 gigs"', "targets.a.max_cache: '10 gigs' is not a size"),
        ("max_cache = -1", "targets.a.max_cache: -1 bytes is out of range"),
        ("max_cache = true", "targets.a.max_cache: a size, not a boolean"),
        ('min_free = "0%"', "targets.a.min_free: '0%' is not a percentage"),
        ('min_free = "120%"', "targets.a.min_free:"),
        ("min_free = 0", "targets.a.min_free: 0 bytes free is no goal"),
        ("critical_percent = 0", "targets.a.critical_percent:"),
        ("critical_percent = 101", "targets.a.critical_percent:"),
        ("critical_interval_s = 0", "targets.a.critical_interval_s:"),
        ('docker_root = "var/lib/docker"', "targets.a.docker_root: an absolute path"),
        ('docker_root = "/var/lib/docker;rm -rf /"', "targets.a.docker_root:"),
        ('docker_root = "/var/lib/docker/../../etc"', "targets.a.docker_root:"),
        ('docker_root = "/var/lib/docker\\n-a"', "targets.a.docker_root:"),
        ('docker_root = "/var/$(id)"', "targets.a.docker_root:"),
    ],
)
def test_a_bad_disk_key_names_the_target_and_the_key(line, named):
    assert named in problems(f'[targets.a]\nhost = "x"\n{line}')


def test_a_bad_disk_key_in_the_defaults_is_named_there():
    assert "defaults.min_free:" in problems(
        '[defaults]\nmin_free = "lots"\n[targets.a]\nhost = "x"'
    )
