"""The service as deployed: gunicorn with several gthread workers, the real build host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import TOKEN
from tests.hosts import REPO, free_port, wait_for

pytestmark = [pytest.mark.sshd, pytest.mark.dockerd]


def request(url: str, token: str | None = TOKEN, method: str = "POST") -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = b"" if method == "POST" else None
    call = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(call, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


@pytest.fixture
def serve(tmp_path):
    processes: list[subprocess.Popen] = []

    def start(env: dict[str, str], workers: int = 3) -> str:
        port = free_port()
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PRUNEHOOK_")}
        log = (tmp_path / f"gunicorn-{port}.log").open("wb")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "wsgi:app",
                "--config",
                "gunicorn.conf.py",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
            ],
            cwd=REPO,
            env=clean | {"PRUNEHOOK_INSTANCE_PATH": str(tmp_path / "instance")} | env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        processes.append(process)
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return request(f"{base}/healthz", None, "GET")[0] == 200
            except OSError:
                return False

        wait_for(healthy, 30, "gunicorn", process)
        return base

    yield start
    for process in processes:
        process.terminate()
        process.wait(30)


def test_many_concurrent_triggers_across_workers_start_one_prune(serve, build_host, tmp_path):
    base = serve(
        build_host.env()
        | {"PRUNEHOOK_TOKEN": TOKEN, "PRUNEHOOK_DB_PATH": str(tmp_path / "state.sqlite3")}
    )
    ran_before = len(build_host.commands_run())
    paths = ["/hooks/cron"] * 200

    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(lambda path: request(base + path), paths))

    assert {code for code, _ in answers} <= {200, 202}
    decisions = [body["decision"] for _, body in answers]
    assert decisions.count("started") == 1
    assert set(decisions) <= {"started", "busy", "skipped"}

    def finished() -> dict | None:
        shown = request(f"{base}/status", None, "GET")[1]
        return shown if shown["in_flight"] is None and shown["last_result"] else None

    shown = wait_for(finished, 60, "the prune to finish")
    assert shown["last_result"] == "ok"
    assert len(shown["recent_runs"]) == 1
    assert len(build_host.commands_run()) == ran_before + 1


def test_first_start_without_a_token_keeps_the_hooks_closed(serve, tmp_path):
    base = serve({"PRUNEHOOK_DB_PATH": str(tmp_path / "state.sqlite3")}, workers=2)
    token_file = Path(tmp_path / "instance" / "hook-token")
    token = token_file.read_text().strip()

    assert request(f"{base}/hooks/cron", token=None)[0] == 401
    code, body = request(f"{base}/hooks/cron", token=token)
    assert (code, body["decision"]) == (200, "no_target")
    log = next(tmp_path.glob("gunicorn-*.log")).read_text()
    assert str(token_file) in log
    assert token not in log
