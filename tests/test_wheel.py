"""prunehook as an installed wheel, not a clone: the suite builds the wheel, installs it in
a fresh virtualenv, and runs `prunehook check` and `prunehook serve` against a real build
host from a folder with no checkout in it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TOKEN
from tests.harness import REPO, Gunicorn, How, start_gunicorn

pytestmark = [pytest.mark.sshd, pytest.mark.dockerd]


@pytest.fixture
def installed(tmp_path_factory) -> Path:
    """The bin folder of a fresh virtualenv holding the wheel of this checkout. Its
    dependencies are the test virtualenv's, on its path (a .pth file), so nothing is
    downloaded; prunehook itself is the wheel's, not the checkout's."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True)
    for name in archive.stdout.decode().split("\0"):
        if name and (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((REPO / name).read_bytes())
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    built = root / "dist"
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(built), str(source)],
        check=True,
        cwd=root,
    )
    (wheel,) = built.glob("prunehook-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = venv / Path(sysconfig.get_path("purelib")).relative_to(sys.prefix)
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    python = venv / "bin" / "python"
    subprocess.run([python, *pip[1:], "install", "--no-deps", str(wheel)], check=True)
    return venv / "bin"


@pytest.fixture
def build_host_env(make_sshd, docker_engine, tmp_path) -> dict[str, str]:
    """An operator's environment for a real build host; no virtualenv of the suite's on
    PATH."""
    host = make_sshd(docker_host=docker_engine.host, docker_root=docker_engine.data_root)
    own = {name: value for name, value in os.environ.items() if not name.startswith("PRUNEHOOK_")}
    return (
        own
        | host.env()
        | {
            "PRUNEHOOK_TOKEN": TOKEN,
            "PRUNEHOOK_DB_PATH": str(tmp_path / "state.sqlite3"),
            "PRUNEHOOK_INSTANCE_PATH": str(tmp_path / "instance"),
        }
    )


@contextlib.contextmanager
def serving(installed: Path, env: dict[str, str], cwd: Path) -> Iterator[Gunicorn]:
    served = start_gunicorn(
        env, how=How.SERVE, bin_folder=installed, workers=1, log_path=cwd / "serve.log",
        token=TOKEN, cwd=cwd,
    )  # fmt: skip
    try:
        served.wait_until_serving(timeout=60)
        yield served
    finally:
        served.stop()


def test_the_wheel_in_a_fresh_virtualenv_checks_and_serves_a_real_build_host(
    installed, build_host_env, tmp_path
):
    """One test, one wheel: building it is most of the time."""
    where = subprocess.run(
        [installed / "python", "-c", "import webhook; print(webhook.__file__)"],
        capture_output=True, text=True, cwd=tmp_path, check=True,
    )  # fmt: skip
    assert where.stdout.startswith(str(installed.parent))
    shown = subprocess.run([installed / "prunehook", "--help"], capture_output=True, text=True)
    assert shown.returncode == 0
    for command in ("serve", "check", "prune", "status", "targets", "state", "hosts", "notify"):
        assert f"\n  {command} " in shown.stdout

    checked = subprocess.run(
        [installed / "prunehook", "check"],
        capture_output=True, text=True, cwd=tmp_path, env=build_host_env, timeout=60,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "PASS  ssh login" in checked.stdout and "PASS  cache" in checked.stdout

    with serving(installed, build_host_env, tmp_path) as served:
        status, answer = served.call("/hooks/cron?wait=1", body={"source": "wheel"})
        assert status == 200, answer
        assert answer["decision"] == "started"
        assert answer["run"]["result"] == "ok"
        assert served.status()["last_result"] == "ok"
    # a graceful stop: the master ended its workers and itself
    assert served.process.returncode == 0
