"""Configuration from the environment: a safe default with a warning, or a refusal."""

from __future__ import annotations

import pytest

from webhook.config import ConfigError, load_settings


def test_defaults_are_the_documented_ones():
    settings, warnings = load_settings()
    assert (settings.enabled, settings.ssh_host, settings.ssh_port) == (True, "", 22)
    assert (settings.interval_s, settings.retry_after_s, settings.timeout_s) == (21600, 600, 120)
    assert (settings.until, settings.prune_all, settings.notify_min_gb) == ("24h", False, 0)
    assert settings.target is None
    assert warnings == []


@pytest.mark.parametrize(
    ("name", "value", "attribute", "default"),
    [
        ("PRUNEHOOK_INTERVAL_S", "0", "interval_s", 21600),
        ("PRUNEHOOK_INTERVAL_S", "soon", "interval_s", 21600),
        ("PRUNEHOOK_TIMEOUT_S", "-5", "timeout_s", 120),
        ("PRUNEHOOK_RETRY_AFTER_S", "nan", "retry_after_s", 600),
        ("PRUNEHOOK_NOTIFY_MIN_GB", "-3", "notify_min_gb", 0),
    ],
)
def test_bad_value_with_a_safe_default_warns_and_uses_it(
    monkeypatch, name, value, attribute, default
):
    monkeypatch.setenv(name, value)
    settings, warnings = load_settings()
    assert getattr(settings, attribute) == default
    assert any(name in warning for warning in warnings)


def test_days_are_converted_to_hours_docker_understands(monkeypatch):
    monkeypatch.setenv("PRUNEHOOK_UNTIL", "7d")
    settings, warnings = load_settings()
    assert settings.until == "168h"
    assert any("168h" in warning for warning in warnings)


def test_every_variable_without_a_safe_default_is_reported_at_once(monkeypatch, tmp_path):
    monkeypatch.setenv("PRUNEHOOK_UNTIL", "forever")
    monkeypatch.setenv("PRUNEHOOK_SSH_KEY_FILE", str(tmp_path / "no-such-key"))
    monkeypatch.setenv("PRUNEHOOK_SSH_PORT", "ssh")
    monkeypatch.setenv("PRUNEHOOK_ENABLED", "maybe")
    monkeypatch.setenv("PRUNEHOOK_TELEGRAM_BOT_TOKEN", "123:abc")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert set(raised.value.errors) == {
        "PRUNEHOOK_UNTIL",
        "PRUNEHOOK_SSH_KEY_FILE",
        "PRUNEHOOK_SSH_PORT",
        "PRUNEHOOK_ENABLED",
        "PRUNEHOOK_TELEGRAM_CHAT_ID",
    }
    assert "PRUNEHOOK_UNTIL" in str(raised.value)
    assert "123:abc" not in str(raised.value)


def test_dotenv_is_read_but_never_overrides_the_environment(monkeypatch, tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("PRUNEHOOK_INTERVAL_S=3600\nPRUNEHOOK_UNTIL=48h\n")
    monkeypatch.setenv("PRUNEHOOK_UNTIL", "12h")
    settings, _ = load_settings(dotenv)
    assert (settings.interval_s, settings.until) == (3600, "12h")


def test_secrets_stay_out_of_the_settings_repr(monkeypatch):
    monkeypatch.setenv("PRUNEHOOK_TOKEN", "s3cret-token-value")
    monkeypatch.setenv("PRUNEHOOK_SSH_KEY", "-----BEGIN OPENSSH PRIVATE KEY-----")
    settings, _ = load_settings()
    assert "s3cret" not in repr(settings)
    assert "PRIVATE KEY" not in repr(settings)
