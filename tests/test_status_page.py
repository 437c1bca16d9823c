"""GET /status in a browser: a readable page; JSON stays the default for tools."""

from __future__ import annotations

import pytest

from tests.conftest import AUTH
from tests.payloads import WATCHDOG_ALERT
from webhook.outcome import Execution

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "application/json, text/html"])
def test_tools_get_json(client, accept):
    headers = {"Accept": accept} if accept else {}
    response = client.get("/status", headers=headers)
    assert response.is_json


def test_a_browser_gets_a_page_with_runs_and_a_chart(client, fake_host, clock):
    client.post("/hooks/cron?wait=1", headers=AUTH)
    clock.advance(21600)
    fake_host.execution = Execution(1, "", "Cannot connect to the Docker daemon\n", 0.3)
    client.post("/hooks/cron?wait=1", headers=AUTH)

    response = client.get("/status", headers={"Accept": BROWSER})

    assert response.content_type.startswith("text/html")
    page = response.get_data(as_text=True)
    assert "ci@127.0.0.1:22" in page
    assert "docker builder prune -f --filter until=24h" in page
    assert "Recent runs" in page
    assert page.count("<rect ") == 2
    assert "1.5GB" in page
    assert "docker_unavailable" in page
    assert "next eligible" in page


def test_the_page_escapes_what_callers_sent(client, fake_host):
    hostile = WATCHDOG_ALERT | {"host": "<script>alert(1)</script>"}
    client.post("/hooks/watchdog?wait=1", json=hostile, headers=AUTH)
    page = client.get("/status", headers={"Accept": BROWSER}).get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;" in page


def test_the_page_renders_in_headless_chromium(tmp_path):
    import subprocess
    import sys

    from tests.hosts import REPO, find_binary

    # the shared rule: skips without Debian's chromium, fails under CI=true
    chromium = find_binary("chromium")
    out = tmp_path / "status.png"
    subprocess.run(
        [sys.executable, "tools/screenshot_status.py", "--out", str(out), "--chromium", chromium],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=180,
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 20_000
