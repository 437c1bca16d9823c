"""contrib/systemd/prunehook.service: a unit systemd accepts, whose commands are prunehook's,
and whose reload serves the targets file as edited (or refuses a bad one, naming it)."""

from __future__ import annotations

import os
import subprocess

from tests.conftest import TOKEN
from tests.harness import REPO, How, find_binary, start_gunicorn, wait_for

UNIT = REPO / "contrib" / "systemd" / "prunehook.service"
INSTALLED = "/opt/prunehook/bin/prunehook"
PRUNEHOOK = REPO / ".venv" / "bin" / "prunehook"


def unit_lines(key: str) -> list[str]:
    return [
        line.partition("=")[2]
        for line in UNIT.read_text().splitlines()
        if line.startswith(f"{key}=")
    ]


def test_systemd_accepts_the_unit(tmp_path):
    verify = find_binary("systemd-analyze", "/usr/bin/systemd-analyze")
    here = tmp_path / "prunehook.service"
    here.write_text(UNIT.read_text().replace(INSTALLED, str(PRUNEHOOK)))

    checked = subprocess.run([verify, "verify", str(here)], capture_output=True, text=True)

    assert checked.returncode == 0, checked.stderr
    assert checked.stderr == ""


def test_the_units_commands_are_prunehooks():
    assert unit_lines("ExecStart") == [f"{INSTALLED} serve --bind 127.0.0.1:8000"]
    assert unit_lines("ExecReload") == [f"{INSTALLED} targets", "/bin/kill -HUP $MAINPID"]


def block(name: str, address: str) -> str:
    return f'\n[targets.{name}]\nhost = "{address}"\n'


def test_a_reload_serves_the_targets_file_as_edited_and_refuses_a_bad_one(ssh_keys, tmp_path):
    targets = tmp_path / "targets.toml"
    targets.write_text("# edited by hand\n" + block("build-1", "127.0.0.2"))
    env = {name: value for name, value in os.environ.items() if not name.startswith("PRUNEHOOK")}
    env |= {
        "PRUNEHOOK_TARGETS_FILE": str(targets),
        "PRUNEHOOK_SSH_KEY_FILE": str(ssh_keys.client_key),
        "PRUNEHOOK_SSH_KNOWN_HOSTS": str(ssh_keys.known_hosts),
        "PRUNEHOOK_TOKEN": TOKEN,
        "PRUNEHOOK_INSTANCE_PATH": str(tmp_path / "instance"),
        "TMPDIR": str(tmp_path / "tmp"),  # where gunicorn's settings make the metrics folder
    }
    (tmp_path / "tmp").mkdir()
    served = start_gunicorn(
        env, how=How.SERVE, workers=1, log_path=tmp_path / "serve.log", token=TOKEN, cwd=tmp_path
    )
    process = served.process

    def reload() -> subprocess.CompletedProcess[bytes]:
        """The unit's ExecReload as systemd runs it: each line in turn, up to one that fails."""
        for line in unit_lines("ExecReload"):
            line = line.replace(INSTALLED, str(PRUNEHOOK)).replace("$MAINPID", str(process.pid))
            done = subprocess.run(line.split(), env=env, cwd=tmp_path, capture_output=True)
            if done.returncode != 0:
                break
        return done

    def names() -> list[str]:
        return sorted(shown["name"] for shown in served.status()["targets"])

    try:
        served.wait_until_serving()
        assert names() == ["build-1"]

        targets.write_text(targets.read_text() + block("build-2", "127.0.0.3"))
        assert reload().returncode == 0
        wait_for(lambda: names() == ["build-1", "build-2"], 30, "the reload", process)

        targets.write_text(targets.read_text() + block("build-2", "127.0.0.4"))  # twice: refused
        refused = reload()
        assert refused.returncode != 0
        assert b"PRUNEHOOK_TARGETS_FILE" in refused.stderr + refused.stdout
        assert names() == ["build-1", "build-2"]  # still serving what it had
    finally:
        served.stop()
    # the metrics folder gunicorn made goes with it, reloaded or not
    assert served.process.returncode == 0
    assert list((tmp_path / "tmp").glob("prunehook-metrics-*")) == []
