"""The docs' deployment sections (docs/production.md, docs/replicas.md, docs/guard.md),
followed as written with real parts: the Procfile's command run twice on one real
PostgreSQL, a real sshd (the key pinned to the guard) in front of a real dockerd; the move of
an existing installation with `state copy`; the host's own interval from the guard page's
authorized_keys line; and the Kubernetes container's command with the variables its
manifests give it. No cluster runs here: Kubernetes itself is untried.

Each deployment runs from a copy of the repository (the "slug" a platform builds), so what
the docs ship with the code (deploy/known_hosts) is a file of that copy, and the copy
shows what prunehook writes into the app's folder: nothing, with PostgreSQL.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from tests.conftest import TOKEN
from tests.harness import (
    REPO,
    Gunicorn,
    How,
    SSHServer,
    free_port,
    operator_environment,
    start_gunicorn,
    wait_for,
)
from tests.readme import (
    GUARD,
    PRODUCTION,
    REPLICAS,
    assignments,
    container,
    fenced_blocks,
    manifest,
    section,
)

PAAS = section(PRODUCTION, "Deploying on a PaaS")
# what prunehook's folder holds on a platform besides the code: never copied into the slug
NOT_SHIPPED = shutil.ignore_patterns(
    ".git", ".venv", "instance", ".env", "__pycache__", "*_cache", ".hypothesis", "*.egg-info"
)


def docs_command(page: str, title: str, starts: str) -> str:
    """The one line of a section's code blocks that starts with `starts`."""
    lines = [
        line
        for block in fenced_blocks(section(page, title))
        for line in block.splitlines()
        if line.startswith(starts)
    ]
    (line,) = lines
    return line


def shell(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def runs(url: str) -> list[tuple[str, str | None]]:
    with psycopg.connect(url) as connection:
        found = connection.execute("SELECT result, error_kind FROM runs ORDER BY id").fetchall()
    return [(result, kind) for result, kind in found]


@pytest.fixture
def slug(tmp_path: Path) -> Path:
    """The app as a platform builds it: the repository's files, and a .venv beside them as
    an installation made by `make run` has (the docs' commands call .venv/bin/flask)."""
    app = tmp_path / "app"
    shutil.copytree(REPO, app, ignore=NOT_SHIPPED)
    (app / ".venv").symlink_to(REPO / ".venv")
    return app


@pytest.fixture
def host(make_sshd, docker_engine) -> SSHServer:
    """A build host: the key pinned to the guard, sessions reaching a real dockerd."""
    return make_sshd(docker_host=docker_engine.host)


@pytest.fixture
def procfile(tmp_path: Path) -> Iterator[Callable[..., Gunicorn]]:
    """Start the Procfile's `web:` command in a folder, with exactly the given variables and
    the PORT the platform sets; every instance is stopped at the end."""
    started: list[Gunicorn] = []

    def start(env: dict[str, str], cwd: Path, token: str | None = TOKEN) -> Gunicorn:
        port = free_port()
        served = start_gunicorn(
            env | {"PORT": str(port)},
            how=How.PROCFILE,
            port=port,
            cwd=cwd,
            log_path=tmp_path / f"procfile-{port}.log",
            token=token,
        )
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


def ship_known_hosts(slug: Path, host: SSHServer) -> None:
    """Step 2 of the PaaS section, its lines run as written, for the test's host and port
    (the commit is the platform's business, not this test's)."""
    (block,) = [b for b in fenced_blocks(PAAS) if "ssh-keyscan" in b]
    for line in block.splitlines():
        if line.startswith("git "):
            continue
        line = line.replace("-p 22 build-1.example", f"-p {host.port} 127.0.0.1")
        done = shell(line, slug, operator_environment())
        assert done.returncode == 0, f"{line}: {done.stderr}"
    assert f"[127.0.0.1]:{host.port} ssh-ed25519" in (slug / "deploy/known_hosts").read_text()


def paas_variables(host: SSHServer, database_url: str) -> dict[str, str]:
    """Step 3's variables with the test's values, and the DATABASE_URL step 1's platform
    sets (in its postgres:// form); a variable the docs add must be given a value here."""
    (block,) = [b for b in fenced_blocks(PAAS) if b.startswith("PRUNEHOOK_")]
    written = assignments(block)
    ours = {
        "PRUNEHOOK_TOKEN": TOKEN,
        "PRUNEHOOK_SSH_HOST": "127.0.0.1",
        "PRUNEHOOK_SSH_PORT": str(host.port),
        "PRUNEHOOK_SSH_USER": "root",
        "PRUNEHOOK_SSH_KEY": host.client_key.read_text(),
    }
    as_written = {"PRUNEHOOK_SSH_KNOWN_HOSTS"}
    assert set(written) == set(ours) | as_written
    assert written["PRUNEHOOK_SSH_KNOWN_HOSTS"] == "deploy/known_hosts"
    platform = {"DATABASE_URL": database_url.replace("postgresql://", "postgres://", 1)}
    return operator_environment(**(written | ours | platform))


def test_the_paas_section_as_written_two_instances_on_one_database_prune_once(
    postgres_database, host, slug, procfile
):
    ship_known_hosts(slug, host)
    env = paas_variables(host, postgres_database)
    instances = [procfile(env, slug), procfile(env, slug)]
    for instance in instances:
        instance.wait_until_serving()
    assert [i.call("/readyz", None, "GET") for i in instances] == [(200, {"status": "ready"})] * 2

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda n: instances[n % 2].call("/hooks/cron"), range(40)))

    assert {code for code, _ in answers} <= {200, 202}
    decisions = [body["decision"] for _, body in answers]
    assert decisions.count("started") == 1
    assert set(decisions) <= {"started", "busy", "skipped"}
    wait_for(lambda: runs(postgres_database) == [("ok", None)], 60, "the prune to be recorded")
    assert [line.split()[0] for line in host.prunes_run()] == ["allowed"]
    for instance in instances:  # whichever instance answers, the same state
        assert instance.call("/hooks/cron")[1]["decision"] == "skipped"
        assert instance.status()["last_result"] == "ok"
    # step 4: prunehook keeps nothing in the app's folder (no state, no token file)
    assert not (slug / "instance").exists()
    assert [p for p in slug.rglob("*") if p.suffix == ".sqlite3" or p.name == "hook-token"] == []


def test_with_a_database_url_and_no_token_the_procfile_refuses_to_start_as_the_docs_say(
    postgres_database, host, slug, procfile, tmp_path
):
    ship_known_hosts(slug, host)
    env = paas_variables(host, postgres_database)
    del env["PRUNEHOOK_TOKEN"]
    replicas = section(REPLICAS, "Replicas and PostgreSQL")
    (quoted,) = [b for b in fenced_blocks(replicas) if "invalid" in b]

    refused = procfile(env, slug)

    assert refused.process.wait(60) != 0
    assert refused.log_path is not None
    said = refused.log_path.read_text()
    for line in quoted.splitlines():
        assert line in said


def test_moving_an_existing_installation_as_written_keeps_the_last_run_and_the_token(
    postgres_database, host, slug, procfile
):
    ship_known_hosts(slug, host)
    replicas = paas_variables(host, postgres_database)
    # before the move: one instance, the SQLite state in its folder, a generated token
    single = {k: v for k, v in replicas.items() if k not in ("DATABASE_URL", "PRUNEHOOK_TOKEN")}
    old = procfile(single, slug, token=None)
    old.wait_until_serving()
    generated = (slug / "instance" / "hook-token").read_text().strip()
    code, ran = old.call("/hooks/cron?wait=1", token=generated)
    assert (code, ran["run"]["result"]) == (200, "ok")
    old.stop()  # step 1

    # step 2, the docs' command, this database's URL read as they say
    moving = section(REPLICAS, "Moving an existing installation")
    (read,) = re.findall(r"read -rs (\w+)", moving)
    copy = docs_command(REPLICAS, "Moving an existing installation", ".venv/bin/prunehook")
    # the folder's own installation (`make run`) would import its package from here; the
    # shared .venv's editable install points at the checkout instead
    single |= {read: postgres_database, "PYTHONPATH": str(slug)}
    copied = shell(copy, slug, single)
    state = slug / "instance" / "prunehook.sqlite3"
    assert copied.returncode == 0, copied.stderr
    assert copied.stdout.strip() == (
        f"copied 1 target(s), 1 run(s) and 0 delivery id(s) from {state}"
    )
    again = shell(copy, slug, single)
    assert again.returncode == 1
    assert "refused: the destination already has state for 127.0.0.1; nothing was copied" in (
        again.stderr
    )

    # step 3, the docs' line for the token, evaluated in the installation's folder
    (keep,) = re.findall(r"`(PRUNEHOOK_TOKEN=[^`]+)`", moving)
    kept = shell(f'{keep}; printf %s "$PRUNEHOOK_TOKEN"', slug, single).stdout
    assert kept == generated

    # step 4: the replicas go on from the last run, with the senders' token
    moved = [procfile(replicas | {"PRUNEHOOK_TOKEN": kept}, slug, token=kept) for _ in range(2)]
    for instance in moved:
        instance.wait_until_serving()
        assert instance.call("/hooks/cron")[1]["decision"] == "skipped"
    assert [line.split()[0] for line in host.prunes_run()] == ["allowed"]
    assert runs(postgres_database) == [("ok", None)]


@pytest.fixture
def guarded_host(make_sshd, docker_engine, tmp_path) -> SSHServer:
    """A build host whose guard is installed with the guard page's authorized_keys options (the
    state file moved into the test's folder; the harness adds --log and --docker)."""
    line = docs_command(GUARD, "The host's own interval", "restrict,")
    (options,) = re.findall(r'command="/usr/local/bin/prunehook-guard ([^"]+)"', line)
    words = options.split()
    timeout = int(words[words.index("--timeout") + 1])
    kept = [w for i, w in enumerate(words) if "--timeout" not in (w, words[i - 1])]
    state = tmp_path / "guard-state" / "last-prune"
    state.parent.mkdir()
    kept = [str(state) if word.startswith("/var/lib/") else word for word in kept]
    assert kept[:2] == ["--min-interval", "21000"] and kept[2] == "--state"
    return make_sshd(docker_host=docker_engine.host, guard_timeout=timeout, guard_options=kept)


def test_the_hosts_own_interval_as_written_holds_when_the_service_state_is_lost(
    postgres_database, guarded_host, slug, procfile
):
    """With PRUNEHOOK_WAIT_FOR_RUN=true too, as on a platform that freezes the CPU: every
    hook answers with its run."""
    assert "`PRUNEHOOK_WAIT_FOR_RUN=true`" in section(
        PRODUCTION, "Platforms that freeze the CPU after the response"
    )
    ship_known_hosts(slug, guarded_host)
    env = paas_variables(guarded_host, postgres_database) | {"PRUNEHOOK_WAIT_FOR_RUN": "true"}
    instance = procfile(env, slug)
    instance.wait_until_serving()
    code, first = instance.call("/hooks/cron")
    assert (code, first["decision"], first["run"]["result"]) == (200, "started", "ok")

    # the service's state is lost (a new, empty database would do the same)
    with psycopg.connect(postgres_database) as connection:
        connection.execute("TRUNCATE targets, runs")
    code, refused = instance.call("/hooks/cron")

    assert (code, refused["decision"]) == (200, "started")
    assert (refused["run"]["result"], refused["run"]["error_kind"]) == ("failed", "host_interval")
    shown = instance.status()
    assert shown["last_error_kind"] == "host_interval"
    (written,) = re.findall(r"`last_error` `([^`]+)`", section(GUARD, "The host's own interval"))
    as_written = re.sub(r"\d+", r"\\d+", re.escape(" ".join(written.split())))
    assert re.fullmatch(as_written, shown["last_error"]), (as_written, shown["last_error"])
    wait = shown["next_eligible_ts"] - shown["last_finished_ts"]
    assert 21000 - 120 <= wait <= 21000  # the host's time, not the 600 s retry delay
    assert instance.call("/hooks/cron")[1]["decision"] == "skipped"
    metrics = instance.raw("/metrics")
    assert re.search(r'prunehook_prunes_total\{[^}]*outcome="host_interval"[^}]*\} 1\.0', metrics)
    assert [line.split()[0] for line in guarded_host.prunes_run()] == ["allowed", "refused"]


def test_the_kubernetes_containers_command_with_its_variables_answers_its_probes(
    postgres_database, host, tmp_path
):
    """What a kubelet would start, started here as a process: the container's command (its
    0.0.0.0:8000 on a loopback port), the variables of the settings ConfigMap and of the
    Secret (test values), known_hosts where the ConfigMap volume would put it (under the
    test's folder), and the host's port, which the example leaves at 22."""
    settings = dict(manifest("ConfigMap", "prunehook-settings")["data"])
    secret = {
        "token": TOKEN,
        "status-token": "status-token-of-the-container",
        "ssh-key": host.client_key.read_text(),
        "database-url": postgres_database,
    }
    assert set(secret) == set(manifest("Secret", "prunehook")["stringData"])
    from_secret = {
        entry["name"]: secret[entry["valueFrom"]["secretKeyRef"]["key"]]
        for entry in container()["env"]
    }
    (mount,) = [m for m in container()["volumeMounts"] if m["name"] == "known-hosts"]
    folder = tmp_path / mount["mountPath"].lstrip("/")
    folder.mkdir(parents=True)
    shutil.copy(host.known_hosts, folder / "known_hosts")
    settings |= {
        "PRUNEHOOK_SSH_HOST": "127.0.0.1",
        "PRUNEHOOK_SSH_USER": "root",
        "PRUNEHOOK_SSH_KNOWN_HOSTS": str(tmp_path) + settings["PRUNEHOOK_SSH_KNOWN_HOSTS"],
        "PRUNEHOOK_SSH_PORT": str(host.port),
    }
    port = free_port()
    command = [part.replace("0.0.0.0:8000", f"127.0.0.1:{port}") for part in container()["command"]]
    log_path = tmp_path / "container.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO,  # the image's working directory: this repository
            env=operator_environment(**settings, **from_secret),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    served = Gunicorn(port, process, log_path, time.monotonic(), TOKEN)
    try:
        served.wait_until_serving()
        for probe in ("readinessProbe", "livenessProbe"):
            path = container()[probe]["httpGet"]["path"]
            assert served.call(path, None, "GET")[0] == 200, path
        assert served.call("/metrics", None, "GET")[0] == 401  # the status token is set
        code, ran = served.call("/hooks/cron?wait=1")
        assert (code, ran["run"]["result"]) == (200, "ok")
    finally:
        served.stop()
    assert [line.split()[0] for line in host.prunes_run()] == ["allowed"]
