"""Configuration from the environment: a safe default with a warning, or a refusal."""

from __future__ import annotations

import os
import re
import tomllib
from operator import attrgetter
from unittest import mock

import pytest
from environs import Env

from tests.harness import REPO
from webhook import config, create_app
from webhook.config import VARIABLES, ConfigError, Settings, load_settings
from webhook.core.command import build_prune_command
from webhook.core.disk import FreeGoal
from webhook.core.duration import DurationError, normalize_until
from webhook.core.targets import TargetsFileError, parse_targets

ASSIGNMENT = re.compile(r"[A-Z][A-Z0-9_]*=")


def test_defaults_are_the_documented_ones():
    settings, warnings = load_settings()
    policy = settings.targets.base_policy
    assert settings.server.enabled and settings.targets.env_target is None
    assert (policy.interval_s, policy.retry_after_s, policy.timeout_s) == (21600, 600, 120)
    assert (policy.until, policy.prune_all, settings.notify.min_gb) == ("24h", False, 0)
    assert len(settings.targets.fleet) == 0 and settings.server.max_parallel == 8
    assert settings.targets.host_labels == ("host", "nodename", "instance")
    assert warnings == []


def test_the_env_example_shows_every_variable_with_its_default():
    shown = dict(line.split("=", 1) for line in _example_lines() if ASSIGNMENT.match(line))
    assert sorted(f"PRUNEHOOK_{name.upper()}" for name in VARIABLES) == sorted(shown)
    for name, field in VARIABLES.items():
        if text := shown[f"PRUNEHOOK_{name.upper()}"]:
            assert field.deserialize(int(text) if text.isdigit() else text) == field.load_default


def test_every_variable_carries_its_meaning_for_the_configuration_reference():
    assert [name for name, field in VARIABLES.items() if not field.metadata["description"]] == []


def test_tests_name_each_variable_as_it_is_named_without_its_prefix():
    target = Settings.from_values(ssh_host="build-1", ssh_port=2222, all=True).targets.env_target
    assert target is not None and (target.ssh.port, target.policy.prune_all) == (2222, True)
    with pytest.raises(TypeError, match="port"):
        Settings.from_values(port=2222)


@pytest.mark.parametrize(
    ("name", "value", "attribute", "default"),
    [
        ("PRUNEHOOK_INTERVAL_S", "0", "targets.base_policy.interval_s", 21600),
        ("PRUNEHOOK_INTERVAL_S", "soon", "targets.base_policy.interval_s", 21600),
        # the targets file's bounds: ten years, a day
        ("PRUNEHOOK_INTERVAL_S", "400000000", "targets.base_policy.interval_s", 21600),
        ("PRUNEHOOK_TIMEOUT_S", "-5", "targets.base_policy.timeout_s", 120),
        ("PRUNEHOOK_TIMEOUT_S", "86401", "targets.base_policy.timeout_s", 120),
        ("PRUNEHOOK_RETRY_AFTER_S", "nan", "targets.base_policy.retry_after_s", 600),
        ("PRUNEHOOK_NOTIFY_MIN_GB", "-3", "notify.min_gb", 0),
        ("PRUNEHOOK_LOG_LEVEL", "loud", "server.log_level", "info"),
    ],
)
def test_bad_value_with_a_safe_default_warns_and_uses_it(
    monkeypatch, name, value, attribute, default
):
    monkeypatch.setenv(name, value)
    settings, warnings = load_settings()
    assert attrgetter(attribute)(settings) == default
    assert [warning.split("=")[0] for warning in warnings] == [name]


@pytest.mark.parametrize("value", ["debug", "DEBUG", "Debug"])
def test_the_log_level_is_read_however_it_is_capitalised(monkeypatch, value):
    monkeypatch.setenv("PRUNEHOOK_LOG_LEVEL", value)
    settings, warnings = load_settings()
    assert (settings.server.log_level, warnings) == ("debug", [])


@pytest.mark.parametrize(
    ("key", "value", "variable"),
    [("interval_s", 0, "PRUNEHOOK_INTERVAL_S"), ("port", 70000, "PRUNEHOOK_SSH_PORT")],
)
def test_the_environment_and_a_targets_file_bound_a_key_alike(monkeypatch, key, value, variable):
    document = tomllib.loads(f'[targets.a]\nhost = "x"\n{key} = {value}')
    with pytest.raises(TargetsFileError) as raised:
        parse_targets(document, "targets.toml", {})
    (problem,) = raised.value.problems
    monkeypatch.setenv(variable, str(value))
    try:
        shown = " ".join(load_settings()[1])
    except ConfigError as error:
        shown = str(error)
    assert problem.removeprefix(f"targets.a.{key}: ").rstrip(".") in shown


@pytest.mark.parametrize("made", ["nothing", "a folder"])
def test_a_known_hosts_that_is_no_file_warns_saying_what_it_is(monkeypatch, tmp_path, made):
    path = tmp_path / "known_hosts"
    if made == "a folder":
        path.mkdir()
    monkeypatch.setenv("PRUNEHOOK_SSH_HOST", "build-1.example")
    monkeypatch.setenv("PRUNEHOOK_SSH_KEY", "its text: the key is not read here")
    monkeypatch.setenv("PRUNEHOOK_SSH_KNOWN_HOSTS", str(path))

    _, warnings = load_settings()

    said = "is no file" if made == "a folder" else "does not exist"
    assert warnings == [
        f"PRUNEHOOK_SSH_KNOWN_HOSTS: {path} {said}; every prune will be refused until the"
        " host key is there (ssh-keyscan -p PORT HOST >> FILE)"
    ]


def test_days_are_converted_to_hours_docker_understands(monkeypatch):
    monkeypatch.setenv("PRUNEHOOK_UNTIL", "7d")
    settings, warnings = load_settings()
    assert settings.targets.base_policy.until == "168h"
    assert [warning for warning in warnings if "168h" in warning] == [
        "PRUNEHOOK_UNTIL='7d' is read as '168h' (Docker has no d/w)"
    ]


@pytest.mark.parametrize("value", ["garbage", "forever", "0s", "-1h", "1y", "99999999999h"])
def test_until_docker_would_reject_falls_back_to_24h_with_a_warning(monkeypatch, value):
    monkeypatch.setenv("PRUNEHOOK_UNTIL", value)
    settings, warnings = load_settings()
    assert settings.targets.base_policy.until == "24h"
    (warning,) = [each for each in warnings if each.startswith("PRUNEHOOK_UNTIL")]
    assert repr(value) in warning
    assert warning.endswith("using 24h")


def test_a_100k_digit_until_is_refused_without_echoing_it(monkeypatch):
    typo = "1" * 100_000 + "h"
    with pytest.raises(DurationError, match="100001 characters long"):
        normalize_until(typo)
    monkeypatch.setenv("PRUNEHOOK_UNTIL", typo)
    settings, warnings = load_settings()
    assert settings.targets.base_policy.until == "24h"
    assert len(warnings) == 1
    assert len(warnings[0]) < 200


@pytest.mark.parametrize("until", ["24h\n", "24h\nreboot", "1" * 100_000 + "h"])
def test_the_command_refuses_a_duration_with_a_trailing_newline_or_too_long(until):
    with pytest.raises(ValueError):
        build_prune_command(until, prune_all=False)


def test_every_variable_without_a_safe_default_is_reported_at_once(monkeypatch, tmp_path):
    monkeypatch.setenv("PRUNEHOOK_SSH_KEY_FILE", str(tmp_path / "no-such-key"))
    monkeypatch.setenv("PRUNEHOOK_SSH_PORT", "ssh")
    monkeypatch.setenv("PRUNEHOOK_ENABLED", "maybe")
    monkeypatch.setenv("PRUNEHOOK_ALL", "maybe")
    monkeypatch.setenv("PRUNEHOOK_TELEGRAM_BOT_TOKEN", "123:abc")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert set(raised.value.errors) == {
        "PRUNEHOOK_SSH_KEY_FILE",
        "PRUNEHOOK_SSH_PORT",
        "PRUNEHOOK_ENABLED",
        "PRUNEHOOK_ALL",
        "PRUNEHOOK_TELEGRAM_CHAT_ID",
    }
    assert "PRUNEHOOK_SSH_PORT" in str(raised.value)
    assert "123:abc" not in str(raised.value)


def test_dotenv_is_read_but_never_overrides_the_environment(monkeypatch, tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("PRUNEHOOK_INTERVAL_S=3600\nPRUNEHOOK_UNTIL=48h\n")
    monkeypatch.setenv("PRUNEHOOK_UNTIL", "12h")
    settings, _ = load_settings(dotenv)
    policy = settings.targets.base_policy
    assert (policy.interval_s, policy.until) == (3600, "12h")


def test_secrets_stay_out_of_the_settings_repr(monkeypatch):
    monkeypatch.setenv("PRUNEHOOK_TOKEN", "s3cret-token-value")
    monkeypatch.setenv("PRUNEHOOK_SSH_KEY", "-----BEGIN OPENSSH PRIVATE KEY-----")
    settings, _ = load_settings()
    assert "s3cret" not in repr(settings)
    assert "PRIVATE KEY" not in repr(settings)


def test_fallback_warnings_are_shown_in_status(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PRUNEHOOK_UNTIL", "garbage")
    monkeypatch.setenv("PRUNEHOOK_INTERVAL_S", "soon")
    client = create_app(instance_path=str(tmp_path / "instance")).test_client()

    shown = client.get("/status").get_json()

    assert shown["until"] == "24h"
    assert shown["command"].endswith("until=24h")
    assert [warning.split("=")[0].split(":")[0] for warning in shown["warnings"]] == [
        "PRUNEHOOK_INTERVAL_S",
        "PRUNEHOOK_UNTIL",
    ]


def test_status_shows_no_warnings_for_a_clean_configuration(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    client = create_app(instance_path=str(tmp_path / "instance")).test_client()
    assert client.get("/status").get_json()["warnings"] == []


def _example_lines() -> list[str]:
    return (REPO / ".env.example").read_text().splitlines()


def test_every_variable_the_env_example_sets_is_read_from_a_dotenv(monkeypatch, tmp_path):
    """A name .env.example sets (not commented out) must take effect from `.env`: copied to
    a `.env` as it is, the example loads, and load_settings reads every name it sets."""
    settable = {line.split("=")[0] for line in _example_lines() if ASSIGNMENT.match(line)}
    assert "PRUNEHOOK_SSH_HOST" in settable
    envs: list[Env] = []

    class RecordingEnv(Env):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            envs.append(self)

    monkeypatch.setattr(config, "Env", RecordingEnv)
    dotenv = tmp_path / ".env"
    dotenv.write_text((REPO / ".env.example").read_text())
    with mock.patch.dict(os.environ):  # python-dotenv may copy the file into os.environ
        load_settings(dotenv)
    (env,) = envs
    assert sorted(settable - set(env.dump())) == []


def test_the_env_example_names_where_its_process_only_variables_are_read():
    """The commented-out names are read from the process environment alone, where it says."""
    commented = [line.removeprefix("# ") for line in _example_lines() if line.startswith("# ")]
    process_only = {line.split("=")[0] for line in commented if ASSIGNMENT.match(line)}
    assert process_only == {
        "PRUNEHOOK_INSTANCE_PATH",
        "PORT",
        "WEB_CONCURRENCY",
        "GUNICORN_THREADS",
    }
    # the gunicorn settings read the worker and thread counts through config.server_counts
    readers = "".join(
        (REPO / "webhook" / name).read_text()
        for name in ("gunicorn_settings.py", "config.py", "app.py")
    )
    unread = [name for name in process_only if not re.search(f"[\"']{name}[\"']", readers)]
    assert unread == []


def test_the_env_targets_disk_keys_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("PRUNEHOOK_SSH_HOST", "build-1")
    monkeypatch.setenv("PRUNEHOOK_MAX_CACHE", "10GB")
    monkeypatch.setenv("PRUNEHOOK_MIN_FREE", "15%")
    monkeypatch.setenv("PRUNEHOOK_CRITICAL_PERCENT", "90")
    monkeypatch.setenv("PRUNEHOOK_CRITICAL_INTERVAL_S", "300")
    monkeypatch.setenv("PRUNEHOOK_DOCKER_ROOT", "/srv/docker")
    settings, _ = load_settings()
    assert settings.targets.env_target is not None
    policy = settings.targets.env_target.policy
    assert (policy.max_cache, policy.min_free) == (10 * 10**9, FreeGoal(percent=15))
    assert (policy.critical_percent, policy.critical_interval_s) == (90, 300)
    assert policy.docker_root == "/srv/docker"


def test_the_disk_keys_default_to_no_goal(monkeypatch):
    monkeypatch.setenv("PRUNEHOOK_SSH_HOST", "build-1")
    settings, warnings = load_settings()
    assert settings.targets.env_target is not None
    policy = settings.targets.env_target.policy
    assert (policy.max_cache, policy.min_free, policy.docker_root) == (
        None,
        None,
        "/var/lib/docker",
    )
    assert (policy.critical_percent, policy.critical_interval_s) == (95, 900)
    assert not [warning for warning in warnings if "CRITICAL" in warning]


@pytest.mark.parametrize(
    ("name", "value", "attribute", "default"),
    [
        ("PRUNEHOOK_CRITICAL_PERCENT", "0", "critical_percent", 95),
        ("PRUNEHOOK_CRITICAL_PERCENT", "150", "critical_percent", 95),
        ("PRUNEHOOK_CRITICAL_INTERVAL_S", "never", "critical_interval_s", 900),
    ],
)
def test_a_bad_critical_value_warns_and_uses_the_default(
    monkeypatch, name, value, attribute, default
):
    monkeypatch.setenv(name, value)
    settings, warnings = load_settings()
    assert getattr(settings.targets.base_policy, attribute) == default
    assert any(name in warning for warning in warnings)


def test_a_goal_or_a_docker_root_that_cannot_be_used_refuses_to_start(monkeypatch):
    """A mistyped goal has no safe default: ignoring it would leave the disk unwatched."""
    monkeypatch.setenv("PRUNEHOOK_MAX_CACHE", "10 gigs")
    monkeypatch.setenv("PRUNEHOOK_MIN_FREE", "150%")
    monkeypatch.setenv("PRUNEHOOK_DOCKER_ROOT", "docker")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert sorted(raised.value.errors) == [
        "PRUNEHOOK_DOCKER_ROOT",
        "PRUNEHOOK_MAX_CACHE",
        "PRUNEHOOK_MIN_FREE",
    ]


def test_each_layer_takes_its_own_part_of_the_settings_and_no_part_shows_a_secret(
    make_settings,
):
    settings = make_settings(
        notify_urls=("json://127.0.0.1:9/secret-path",),
        database_url="postgresql://u:pw-secret@127.0.0.1/db",
        hmac_secret="whsec_c2VjcmV0LWZvci1wYXJ0cy10ZXN0",
    )
    parts = (settings.server, settings.auth, settings.notify, settings.targets)
    assert len(settings.auth.hmac_keys) == 1
    assert settings.targets.fleet.names == ("127.0.0.1",)
    shown = " ".join(repr(part) for part in parts)
    for secret in (settings.auth.token, "secret-path", "pw-secret", "c2VjcmV0"):
        assert secret not in shown + repr(settings)


def test_a_known_hosts_file_that_is_not_there_is_a_warning(monkeypatch, tmp_path):
    absent = tmp_path / "known_hosts"
    monkeypatch.setenv("PRUNEHOOK_SSH_HOST", "build-1")
    monkeypatch.setenv("PRUNEHOOK_SSH_KEY", "the key text")
    monkeypatch.setenv("PRUNEHOOK_SSH_KNOWN_HOSTS", str(absent))
    assert [w.split(" does not")[0] for w in load_settings()[1]] == [
        f"PRUNEHOOK_SSH_KNOWN_HOSTS: {absent}"
    ]
    targets = tmp_path / "targets.toml"
    targets.write_text(f'[defaults]\nknown_hosts = "{absent}"\n[targets.a]\nhost = "a"\n')
    monkeypatch.setenv("PRUNEHOOK_TARGETS_FILE", str(targets))
    assert [w.split(" does not")[0] for w in load_settings()[1]] == [
        f"PRUNEHOOK_TARGETS_FILE: known_hosts {absent}"
    ]


def test_a_known_hosts_under_a_user_that_does_not_exist_is_a_warning(monkeypatch, tmp_path):
    targets = tmp_path / "targets.toml"
    targets.write_text('[targets.a]\nhost = "a"\nknown_hosts = "~no-such-user-x/known_hosts"\n')
    monkeypatch.setenv("PRUNEHOOK_TARGETS_FILE", str(targets))
    monkeypatch.setenv("PRUNEHOOK_SSH_KEY", "the key text")
    assert [w.split(" does not")[0] for w in load_settings()[1]] == [
        "PRUNEHOOK_TARGETS_FILE: known_hosts ~no-such-user-x/known_hosts"
    ]


def test_known_hosts_text_on_a_server_is_a_warning_naming_the_file_variable(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PRUNEHOOK_SSH_KNOWN_HOSTS_TEXT", "build-1 ssh-ed25519 AAAAC3Nza")
    client = create_app(instance_path=str(tmp_path / "instance")).test_client()
    assert client.get("/status").get_json()["warnings"] == [
        "PRUNEHOOK_SSH_KNOWN_HOSTS_TEXT is read only on function platforms (docs/functions.md):"
        " a server reads the host keys from the file PRUNEHOOK_SSH_KNOWN_HOSTS names"
    ]


@pytest.mark.parametrize("port", ["ssh", "\u00b2", "22.0", "0", "65536"])
def test_a_port_that_is_not_a_port_refuses_to_start_naming_it(monkeypatch, port):
    monkeypatch.setenv("PRUNEHOOK_SSH_PORT", port)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert list(raised.value.errors) == ["PRUNEHOOK_SSH_PORT"]


def refusal() -> list[str]:
    """The lines of the refusal a start says."""
    with pytest.raises(ConfigError) as raised:
        load_settings()
    return str(raised.value).splitlines()


def test_a_targets_file_with_several_problems_says_each_on_a_line_naming_the_variable(
    targets_file,
):
    path = targets_file('[targets.a]\nhost = "a"\nport = 0\n[targets.b]\nhost = "b"\nbogus = 1\n')
    assert refusal() == [
        "invalid prunehook configuration:",
        f"  PRUNEHOOK_TARGETS_FILE: {path}: targets.a.port: Must be greater than or equal to 1"
        " and less than or equal to 65535.",
        f"  PRUNEHOOK_TARGETS_FILE: {path}: targets.b.bogus: Unknown field.",
    ]


def test_an_until_written_as_a_number_says_a_duration_in_quotes_is_expected(targets_file):
    path = targets_file('[targets.a]\nhost = "a"\nuntil = 24\n')
    assert refusal()[1:] == [
        f"  PRUNEHOOK_TARGETS_FILE: {path}: targets.a.until: 24 is not a duration: write it in"
        ' quotes with a unit, e.g. "24h"'
    ]
