from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import hypothesis
import pytest

from tests.harness import (
    BuildFleet,
    DockerEngine,
    Gunicorn,
    PartMissing,
    PostgresServer,
    SSHKeys,
    SSHServer,
    find_binary,
    free_port,
    operator_environment,
    start_gunicorn,
)
from webhook import create_app
from webhook.config import Settings
from webhook.core.outcome import Execution
from webhook.core.targets import Target
from webhook.store import Store
from webhook.store.postgres import PostgresStore
from webhook.store.sqlite import SQLiteStore

TOKEN = "test-token-7f3a9c1e5b2d4680"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
START = 1_800_000_000.0


# property tests: the same examples on every CI run (a red run can be run again as it was),
# fresh ones on a developer's machine, where exploring is the point
hypothesis.settings.register_profile("ci", derandomize=True, print_blob=True)
hypothesis.settings.register_profile("dev")
hypothesis.settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")

# a test needs a real server exactly when it uses a fixture that starts one
NEEDS = {
    "make_sshd": ("sshd",),
    "build_host": ("sshd", "dockerd"),
    "docker_engine": ("dockerd",),
    "three_hosts": ("sshd", "dockerd"),
    "postgres": ("postgres",),
    "postgres_database": ("postgres",),
    "small_disk": ("sshd", "dockerd"),
    "chromium": ("chromium",),
}


def missing(what: str) -> None:
    """Skip for a missing part, but fail under CI, where every part must run."""
    message = f"{what} (make test installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {message}")
    pytest.skip(message)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    """A part the harness cannot start here (tests/harness raises PartMissing) is missing()."""
    try:
        return (yield)
    except PartMissing as error:
        missing(str(error))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    try:
        return (yield)
    except PartMissing as error:
        missing(str(error))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by the servers their fixtures start (`-m "not dockerd"` selects on it), so
    a test that needs neither never carries the markers by hand."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        needed = {marker for name in names for marker in NEEDS.get(name, ())}
        # a store contract run against PostgreSQL starts its server by the param
        params = getattr(getattr(item, "callspec", None), "params", {})
        needed |= {"postgres"} if "postgres" in params.values() else set()
        for marker in sorted(needed):
            item.add_marker(marker)


@pytest.fixture
def chromium() -> str:
    """Debian's headless Chromium, which checks the page as a browser sees it."""
    return find_binary("chromium")  # missing() without it


@pytest.fixture(autouse=True)
def no_operator_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite never sees the developer's own PRUNEHOOK_* variables or .env."""
    for name in list(os.environ):
        if name.startswith("PRUNEHOOK_"):
            monkeypatch.delenv(name)


class Clock:
    """Injected time: tests move it instead of sleeping."""

    def __init__(self, now: float = START):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# what the fake host's probes answer by default: a 100 GB disk with 40 GB free, 8 GB of cache
FAKE_DF = "   1B-blocks       Avail\n100000000000 40000000000\n"
FAKE_SYSTEM_DF = (
    "TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE\n"
    "Images          0         0         0B        0B\n"
    "Containers      0         0         0B        0B\n"
    "Local Volumes   0         0         0B        0B\n"
    "Build Cache     12        0         8GB       8GB\n"
)
FAKE_VERSION = (
    "Client:\n Version:           28.2.2\n\nServer:\n Engine:\n  Version:          28.2.2\n"
)
NO_BUILDX = "docker: unknown command: docker buildx\n"


def is_prune(command: str) -> bool:
    return command.startswith("docker builder prune ")


class FakeHost:
    """Stands in for the SSH runner in service-level tests. `commands` are the prunes it
    was asked to run (each answered `execution`), `probes` the read-only probes (answered
    as a healthy host would, or as `probe_answers` says, by command)."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.probes: list[str] = []
        self.execution = Execution(0, "Total reclaimed space: 1.5GB\n", "", 0.2)
        self.probe_answers: dict[str, Execution] = {}
        self.df = FAKE_DF
        self.targets: list[str] = []
        self.release = threading.Event()
        self.release.set()
        self.held = 0  # calls waiting for `release` now
        self._lock = threading.Lock()

    def __call__(self, target: Target, command: str) -> Execution:
        with self._lock:
            self.held += 1
        self.release.wait(30)
        with self._lock:
            self.held -= 1
        if not is_prune(command):
            self.probes.append(command)
            return self.probe_answers.get(command) or self.probe(command, self.df)
        self.targets.append(target.name)
        self.commands.append(command)
        return self.execution

    @staticmethod
    def probe(command: str, df: str = FAKE_DF) -> Execution:
        if command.startswith("df "):
            return Execution(0, df, "", 0.01)
        if command == "docker system df":
            return Execution(0, FAKE_SYSTEM_DF, "", 0.05)
        if command == "docker version":
            return Execution(0, FAKE_VERSION, "", 0.02)
        return Execution(1, "", NO_BUILDX, 0.01)

    def hold(self) -> None:
        """Keep the next runs in flight until `release.set()`."""
        self.release.clear()

    def wait_until_held(self, runs: int) -> None:
        """Until `runs` runs wait at the host (their leases renewed for the last time)."""
        deadline = time.monotonic() + 10
        while self.held < runs:
            assert time.monotonic() < deadline, f"{self.held} of {runs} runs reached the host"
            time.sleep(0.01)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake_host() -> Iterator[FakeHost]:
    host = FakeHost()
    yield host
    host.release.set()


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides) -> Settings:
        return Settings.from_values(
            **{
                "ssh_host": "127.0.0.1",
                "ssh_user": "ci",
                "ssh_key": "unused by the fake host",
                "token": TOKEN,
                "db_path": str(tmp_path / "state.sqlite3"),
            }
            | overrides
        )

    return make


@pytest.fixture
def make_app(make_settings, fake_host, clock, tmp_path):
    apps = []

    def make(**overrides):
        app = create_app(
            make_settings(**overrides),
            execute=fake_host,
            clock=clock,
            instance_path=str(tmp_path / "instance"),
        )
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield make
    fake_host.release.set()
    for app in apps:
        app.extensions["prunehook"].join_all(10)


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


# every backend the store's contract suite (tests/test_store.py) runs against
STORE_BACKENDS = ["sqlite", "postgres"]


@pytest.fixture
def postgres_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a fresh, empty database on the session's PostgreSQL."""
    server: PostgresServer = request.getfixturevalue("postgres")
    url = server.fresh_database()
    yield url
    server.drop_database(url)


@pytest.fixture(params=STORE_BACKENDS)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """A factory of connections (workers, replicas) to one fresh database of a backend."""
    opened: list[Store] = []
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_database")

        def make() -> Store:
            store: Store = PostgresStore(url)
            opened.append(store)
            return store

    else:

        def make() -> Store:
            store: Store = SQLiteStore(tmp_path / "state.sqlite3")
            opened.append(store)
            return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store: Callable[[], Store]) -> Store:
    """One connection to a fresh database of a backend, for the whole test: a property
    test's examples share it, each on targets of its own (opening a pool per example cost
    most of their time on PostgreSQL)."""
    return make_store()


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerEngine]:
    engine = DockerEngine(tmp_path_factory.mktemp("dockerd"))
    try:
        yield engine.start()
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def build_host(tmp_path_factory, docker_engine) -> Iterator[SSHServer]:
    """The build host: sshd whose sessions reach our dockerd, the key pinned to the guard."""
    server = SSHServer(
        tmp_path_factory.mktemp("sshd"), docker_engine.host, docker_root=docker_engine.data_root
    )
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the session's own on loopback (`url`), empty database
    `prunehook`. A test that stops it starts it again before it ends."""
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.close()


@pytest.fixture
def make_sshd(tmp_path_factory) -> Iterator[Callable[..., SSHServer]]:
    """A fresh sshd for a test that breaks it (keys, docker host)."""
    servers: list[SSHServer] = []

    def make(docker_host: str = "unix:///nonexistent/docker.sock", **kwargs) -> SSHServer:
        server = SSHServer(tmp_path_factory.mktemp("sshd-fault"), docker_host, **kwargs)
        servers.append(server.start())
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def three_hosts(tmp_path_factory, docker_engine) -> Iterator[BuildFleet]:
    """Three build hosts (three sshd, each with its own host key and guard log) in front of
    the one dockerd, and a targets file naming them build-1..3 (see BuildFleet)."""
    fleet = BuildFleet(
        tmp_path_factory.mktemp("fleet"), docker_engine.host, docker_root=docker_engine.data_root
    )
    try:
        yield fleet.start()
    finally:
        fleet.stop()


@pytest.fixture
def ssh_keys(tmp_path: Path) -> SSHKeys:
    """A client key and known_hosts for a loopback port where no sshd runs."""
    return SSHKeys(tmp_path / "keys")


@pytest.fixture
def targets_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str | bytes], Path]:
    """PRUNEHOOK_TARGETS_FILE naming a file of this text, its [defaults] (added when it has
    none) with a key_file that can be read; bytes are written as they are."""
    key = tmp_path / "id_ed25519"
    key.write_text("a key file that can be read\n")
    path = tmp_path / "targets.toml"

    def write(text: str | bytes) -> Path:
        if isinstance(text, str):
            defaults = f'[defaults]\nkey_file = "{key}"\n'
            if "[defaults]\n" in text:
                text = text.replace("[defaults]\n", defaults, 1).encode()
            else:
                text = (defaults + text).encode()
        path.write_bytes(text)
        monkeypatch.setenv("PRUNEHOOK_TARGETS_FILE", str(path))
        return path

    return write


@pytest.fixture
def service_env(tmp_path: Path) -> Callable[..., dict[str, str]]:
    """The variables that point prunehook at a test build host, with the test token and
    a state file of the test's own; `variables` add or override."""

    def make(host: SSHServer | SSHKeys, **variables: str) -> dict[str, str]:
        own = {"PRUNEHOOK_TOKEN": TOKEN, "PRUNEHOOK_DB_PATH": str(tmp_path / "state.sqlite3")}
        return host.env() | own | variables

    return make


@pytest.fixture
def env_for(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, service_env):
    """Configure through the environment, the way an operator does (and no stray .env)."""
    monkeypatch.chdir(tmp_path)

    def configure(host: SSHServer | SSHKeys, **variables: str) -> None:
        for name, value in service_env(host, **variables).items():
            monkeypatch.setenv(name, value)

    return configure


@pytest.fixture
def serve(tmp_path) -> Iterator[Callable[..., Gunicorn]]:
    """gunicorn serving wsgi:app with the project's config on a loopback port; `call()`
    sends the test token."""
    started: list[Gunicorn] = []

    def start(env: dict[str, str], workers: int = 3) -> Gunicorn:
        port = free_port()
        instance = {"PRUNEHOOK_INSTANCE_PATH": str(tmp_path / "instance")}
        served = start_gunicorn(
            operator_environment(**instance) | env,
            workers=workers,
            port=port,
            log_path=tmp_path / f"gunicorn-{port}.log",
            token=TOKEN,
        )
        started.append(served)
        served.wait_until_serving()
        return served

    yield start
    for served in started:
        served.stop()
