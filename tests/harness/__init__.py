"""The test harness: real servers and records that tests, bench/ and tools/ share.

Nothing here imports pytest. A part that cannot run here (no sshd, not root, ...) raises
`PartMissing`; the tests turn it into a skip, or a failure under CI=true (tests/conftest.py),
and a benchmark or tool simply stops with its message. bench/ and tools/ run as scripts
from the repository root and put the root on sys.path before importing `tests.harness`.
"""

from tests.harness.disk import LoopDisk
from tests.harness.docker import DockerEngine
from tests.harness.fleet import BuildFleet
from tests.harness.gunicorn import Gunicorn, How, operator_environment, start_gunicorn
from tests.harness.parts import (
    BUILD_CLIENT_CANDIDATES,
    GUARD,
    REPO,
    PartMissing,
    find_binary,
    free_port,
    http_call,
    in_a_fresh_app,
    wait_for,
)
from tests.harness.postgres import PostgresServer
from tests.harness.records import failed_outcome, record_run, succeeded_outcome
from tests.harness.ssh import (
    ResettingRelay,
    SSHKeys,
    SSHServer,
    keygen,
    known_hosts_line,
    target_at,
)

__all__ = [
    "BUILD_CLIENT_CANDIDATES",
    "GUARD",
    "REPO",
    "BuildFleet",
    "DockerEngine",
    "Gunicorn",
    "How",
    "LoopDisk",
    "PartMissing",
    "PostgresServer",
    "ResettingRelay",
    "SSHKeys",
    "SSHServer",
    "failed_outcome",
    "find_binary",
    "free_port",
    "http_call",
    "in_a_fresh_app",
    "keygen",
    "known_hosts_line",
    "operator_environment",
    "record_run",
    "start_gunicorn",
    "succeeded_outcome",
    "target_at",
    "wait_for",
]
