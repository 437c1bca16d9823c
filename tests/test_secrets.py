"""Weak secrets refuse to start: short tokens and keys, a token file others could read or swap."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import AUTH, TOKEN
from tests.harness import REPO
from webhook import create_app
from webhook.config import ConfigError, load_settings

GOOD_FILE_TOKEN = "a-token-written-by-the-operator-0123"


@pytest.mark.parametrize("token", ["Zq", "fifteen-bytes!!"])
def test_a_token_under_16_bytes_refuses_to_start_naming_the_variable(monkeypatch, token):
    monkeypatch.setenv("PRUNEHOOK_TOKEN", token)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert list(raised.value.errors) == ["PRUNEHOOK_TOKEN"]
    assert token not in str(raised.value)


def test_an_empty_token_variable_still_means_unset(monkeypatch):
    monkeypatch.setenv("PRUNEHOOK_TOKEN", "")
    settings, _ = load_settings()
    assert settings.auth.token == ""


def _token_file(instance: Path, mode: int = 0o600, text: str = GOOD_FILE_TOKEN) -> Path:
    instance.mkdir(parents=True, exist_ok=True)
    path = instance / "hook-token"
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def _start(make_settings, instance: Path):
    return create_app(make_settings(token=""), instance_path=str(instance))


def test_a_private_token_file_of_this_user_is_used(make_settings, tmp_path):
    _token_file(tmp_path / "instance")
    app = _start(make_settings, tmp_path / "instance")
    assert app.extensions["prunehook"].settings.auth.token == GOOD_FILE_TOKEN


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o620, 0o602, 0o666], ids=oct)
def test_a_token_file_others_can_read_or_write_refuses_to_start_naming_it(
    make_settings, tmp_path, mode
):
    path = _token_file(tmp_path / "instance", mode)
    with pytest.raises(ConfigError) as raised:
        _start(make_settings, tmp_path / "instance")
    assert list(raised.value.errors) == [str(path)]
    assert "chmod 600" in str(raised.value)
    assert GOOD_FILE_TOKEN not in str(raised.value)


def test_a_token_file_owned_by_another_user_refuses_to_start(make_settings, tmp_path):
    if os.geteuid() != 0:
        pytest.fail("giving a file to another user needs root, as the suite runs in CI")
    path = _token_file(tmp_path / "instance")
    os.chown(path, 65534, 65534)
    with pytest.raises(ConfigError) as raised:
        _start(make_settings, tmp_path / "instance")
    assert "owned by uid 65534" in raised.value.errors[str(path)][0]


def test_a_token_file_that_is_a_symlink_refuses_to_start(make_settings, tmp_path):
    target = _token_file(tmp_path / "elsewhere")
    (tmp_path / "instance").mkdir()
    link = tmp_path / "instance" / "hook-token"
    link.symlink_to(target)
    with pytest.raises(ConfigError) as raised:
        _start(make_settings, tmp_path / "instance")
    assert "symlink" in raised.value.errors[str(link)][0]


def test_a_dangling_token_symlink_is_refused_not_followed_to_create_a_file(make_settings, tmp_path):
    (tmp_path / "instance").mkdir()
    link = tmp_path / "instance" / "hook-token"
    link.symlink_to(tmp_path / "planted")
    with pytest.raises(ConfigError):
        _start(make_settings, tmp_path / "instance")
    assert not (tmp_path / "planted").exists()


@pytest.mark.parametrize("text", ["", "short"])
def test_an_empty_or_short_token_file_refuses_to_start(make_settings, tmp_path, text):
    path = _token_file(tmp_path / "instance", text=text)
    with pytest.raises(ConfigError) as raised:
        _start(make_settings, tmp_path / "instance")
    assert "delete it" in raised.value.errors[str(path)][0]


def start_service(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The WSGI app loaded in a process of its own, with only `env` of our variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PRUNEHOOK_", "PG"))}
    return subprocess.run(
        [sys.executable, "-c", "import wsgi"],
        cwd=REPO,
        env=clean | {"PRUNEHOOK_INSTANCE_PATH": str(tmp_path / "instance")} | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_service_exits_non_zero_naming_a_readable_token_file(tmp_path):
    path = _token_file(tmp_path / "instance", 0o644)
    finished = start_service(tmp_path, PRUNEHOOK_DB_PATH=str(tmp_path / "state.sqlite3"))
    assert finished.returncode != 0
    assert str(path) in finished.stderr
    assert GOOD_FILE_TOKEN not in finished.stderr + finished.stdout
    assert TOKEN not in finished.stderr


# -- the database's password -------------------------------------------------------------

DB_PASSWORD = "s3cr%zzet-pw"  # `%zz` is no percent-encoding: libpq's error quotes it


def test_a_database_url_libpq_cannot_read_refuses_to_start_without_repeating_it(tmp_path):
    finished = start_service(
        tmp_path,
        PRUNEHOOK_DATABASE_URL=f"postgresql://prunehook:{DB_PASSWORD}@127.0.0.1:1/db",
        PRUNEHOOK_TOKEN=TOKEN,
    )
    assert finished.returncode != 0
    assert "PRUNEHOOK_DATABASE_URL" in finished.stderr
    assert "s3cr" not in finished.stderr + finished.stdout


def test_state_copy_takes_its_destination_from_the_environment(
    postgres_database, make_app, fake_host
):
    local = make_app()
    local.test_client().post("/hooks/cron?wait=1", headers=AUTH)
    copied = local.test_cli_runner().invoke(
        args=["state", "copy"], env={"PRUNEHOOK_COPY_TO_URL": postgres_database}
    )
    assert copied.exit_code == 0, copied.output
    assert "copied 1 target(s), 1 run(s)" in copied.output


def test_state_copy_refuses_a_password_on_its_command_line_saying_why(make_app):
    url = "postgresql://prunehook:s3cret-pw@127.0.0.1:1/db"
    refused = make_app().test_cli_runner().invoke(args=["state", "copy", "--to", url])
    assert refused.exit_code != 0
    assert "PRUNEHOOK_COPY_TO_URL" in refused.output and "ps" in refused.output
    assert "s3cret-pw" not in refused.output


def test_state_copy_refuses_a_url_libpq_cannot_read_without_repeating_it(make_app):
    url = f"postgresql://prunehook:{DB_PASSWORD}@127.0.0.1:1/db"
    runner = make_app().test_cli_runner()
    refused = runner.invoke(args=["state", "copy"], env={"PRUNEHOOK_COPY_TO_URL": url})
    assert refused.exit_code != 0
    assert "PRUNEHOOK_COPY_TO_URL" in refused.output and "nothing was copied" in refused.output
    assert "s3cr" not in refused.output


def test_state_copy_refuses_a_destination_that_is_no_postgresql_url(make_app):
    runner = make_app().test_cli_runner()
    refused = runner.invoke(args=["state", "copy"], env={"PRUNEHOOK_COPY_TO_URL": "mysql://db/x"})
    assert refused.exit_code == 2
    assert "Invalid value for PRUNEHOOK_COPY_TO_URL: must be a postgresql://" in refused.output
