"""The layout keeps the core pure: importing it never pulls in the I/O layers."""

from __future__ import annotations

import subprocess
import sys

from tests.harness import REPO, in_a_fresh_app

CORE = ["decision", "duration", "sizes", "command", "outcome", "targets", "triggers", "notices"]
IO_MODULES = ["flask", "sqlite3", "paramiko", "prometheus_client", "werkzeug"]


def test_importing_the_core_pulls_in_no_web_database_or_ssh_module():
    imports = "; ".join(f"import webhook.core.{name}" for name in CORE)
    check = f"{imports}; import sys; print(sorted(m for m in {IO_MODULES!r} if m in sys.modules))"
    found = subprocess.run(
        [sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == "[]"


def test_the_sqlite_app_never_imports_the_postgresql_driver(tmp_path):
    """psycopg is loaded only with a database URL: a single host starts without it."""
    then = "print(sorted(m for m in ('psycopg', 'psycopg_pool') if m in sys.modules))"
    assert in_a_fresh_app(tmp_path, then) == "[]"


def test_a_server_loads_the_operators_commands_only_when_one_is_run(tmp_path):
    """webhook.cli is for the `flask` command: a worker starting to serve never imports it."""
    then = (
        "served = 'webhook.cli' in sys.modules; "
        "answer = app.test_cli_runner().invoke(args=['targets', '--help']); "
        "print(served, 'webhook.cli' in sys.modules, answer.exit_code)"
    )
    assert in_a_fresh_app(tmp_path, then) == "False True 0"
