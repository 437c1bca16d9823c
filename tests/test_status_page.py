"""GET /status in a browser: a readable page; JSON stays the default for tools."""

from __future__ import annotations

import re
import subprocess
import threading

import pytest
from flask import Flask, Response
from werkzeug.serving import make_server

from tests.conftest import AUTH
from tests.payloads import WATCHDOG_ALERT
from webhook.core.outcome import Execution
from webhook.core.targets import SSHEndpoint, Target

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
DOCKER_DOWN = Execution(1, "", "Cannot connect to the Docker daemon\n", 0.3)


def fleet_app(make_app, names):
    """An app with a targets file's fleet (the fake host stands in for each)."""
    targets = tuple(
        Target(name, SSHEndpoint(f"{name}.example", user="ci", key="k")) for name in names
    )
    return make_app(targets_file="targets.toml", file_targets=targets)


def prune(client, name, wait=True):
    """One cron-triggered prune of the target `name` (with ?wait=1 unless wait=False)."""
    query = f"target={name}" + ("&wait=1" if wait else "")
    return client.post(f"/hooks/cron?{query}", headers=AUTH).get_json()


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
    assert page.count('class="bar-') == 2
    assert "1.5GB" in page
    assert "docker_unavailable" in page
    assert "next eligible" in page


def test_the_page_escapes_what_callers_sent(client, fake_host):
    hostile = WATCHDOG_ALERT | {"host": "<script>alert(1)</script>"}
    client.post("/hooks/watchdog?wait=1", json=hostile, headers=AUTH)
    page = client.get("/status", headers={"Accept": BROWSER}).get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;" in page


@pytest.mark.parametrize("page", [[], ["--fleet"]], ids=["one host", "fleet"])
def test_the_page_renders_in_headless_chromium(tmp_path, page, chromium):
    import sys

    from tests.harness import REPO

    out = tmp_path / "status.png"
    tool = [sys.executable, "tools/screenshot_status.py", *page]
    subprocess.run(
        [*tool, "--out", str(out), "--chromium", chromium],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=180,
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 20_000


def test_the_chart_draws_a_running_run_as_running_not_failed(client, fake_host, clock):
    client.post("/hooks/cron?wait=1", headers=AUTH)
    clock.advance(21600)
    fake_host.hold()
    assert client.post("/hooks/cron", headers=AUTH).get_json()["decision"] == "started"

    page = client.get("/status", headers={"Accept": BROWSER}).get_data(as_text=True)

    assert page.count('class="bar-ok"') == 1
    assert page.count('class="bar-running"') == 1
    assert 'class="bar-failed"' not in page
    assert "run 2: running" in page
    fake_host.release.set()


def test_a_waited_answer_shows_the_run_as_status_does(client, fake_host):
    big = "x" * 16384
    fake_host.execution = Execution(0, big + "\nTotal reclaimed space: 1.5GB\n", big, 0.2)

    run = client.post("/hooks/cron?wait=1", headers=AUTH).get_json()["run"]

    assert run == client.get("/status").get_json()["recent_runs"][0]
    assert (run["result"], run["reclaimed"]) == ("ok", "1.5GB")
    assert not {"stdout_tail", "stderr_tail", "target"} & set(run)


LOCKED = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status_code"),
    [
        ("GET", "/status", {}, None, 200),
        ("GET", "/healthz", {}, None, 200),
        ("GET", "/metrics", {}, None, 200),
        ("GET", "/openapi.json", {}, None, 200),
        ("GET", "/nowhere", {}, None, 404),
        ("POST", "/hooks/cron", {}, None, 401),
        ("POST", "/hooks/cron", AUTH, None, 202),
        ("GET", "/hooks/cron", AUTH, None, 405),
        ("POST", "/hooks/watchdog", AUTH, b"x" * (2 * 1024 * 1024), 413),
    ],
)
def test_every_answer_forbids_sniffing_and_loading_anything(
    client, method, path, headers, body, status_code
):
    response = client.open(
        path, method=method, headers=headers | {"X-Request-ID": "req-7"}, data=body
    )
    assert response.status_code == status_code
    assert response.headers.getlist("X-Content-Type-Options") == ["nosniff"]
    assert response.headers.getlist("Content-Security-Policy") == [LOCKED]
    assert response.headers.getlist("X-Request-ID") == ["req-7"]


def test_the_page_lets_in_only_its_own_style_block(client):
    response = client.get("/status", headers={"Accept": BROWSER})
    [policy] = response.headers.getlist("Content-Security-Policy")
    assert response.headers.getlist("X-Content-Type-Options") == ["nosniff"]
    nonce = re.fullmatch(re.escape(LOCKED) + r"; style-src 'nonce-([A-Za-z0-9_-]{22,})'", policy)
    assert nonce, policy
    page = response.get_data(as_text=True)
    assert page.count("<style") == page.count(f'<style nonce="{nonce[1]}">') == 1
    assert "<script" not in page and " style=" not in page
    again = client.get("/status", headers={"Accept": BROWSER}).headers["Content-Security-Policy"]
    assert again != policy  # a fresh nonce each time


def test_the_page_renders_in_chromium_with_nothing_blocked(
    make_app, fake_host, clock, tmp_path, chromium
):
    app = make_app()
    client = app.test_client()
    client.post("/hooks/cron?wait=1", headers=AUTH)
    clock.advance(21600)
    fake_host.execution = Execution(1, "", "Cannot connect to the Docker daemon\n", 0.3)
    client.post("/hooks/cron?wait=1", headers=AUTH)
    clock.advance(600)
    fake_host.hold()
    client.post("/hooks/cron", headers=AUTH)
    try:
        browser = in_chromium(chromium, app, "/status", tmp_path)
    finally:
        fake_host.release.set()

    assert "Content Security Policy" not in browser.stderr
    for state in ("ok", "failed", "running"):
        assert f'class="bar-{state}"' in browser.stdout


def test_chromium_reports_a_page_the_policy_blocks(chromium, tmp_path):
    """The control of the check above: Chromium says so on stderr when the policy blocks."""
    blocked = Flask("blocked")

    @blocked.get("/")
    def page() -> Response:
        html = "<html><head><style>b { color: red }</style></head><body><b>x</b></body></html>"
        return Response(html, content_type="text/html", headers={"Content-Security-Policy": LOCKED})

    browser = in_chromium(chromium, blocked, "/", tmp_path)
    assert "Content Security Policy" in browser.stderr


def in_chromium(chromium, app, path, tmp_path):
    """Serve `app` on a loopback port and let headless Chromium load `path`: its DOM on
    stdout, its console (a CSP violation among it) on stderr."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        return subprocess.run(
            [
                chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tmp_path / 'chromium'}", "--enable-logging=stderr", "--v=0",
                "--dump-dom", f"http://127.0.0.1:{server.server_port}{path}",
            ],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
    finally:
        server.shutdown()


def test_a_hosts_page_in_a_fleet_shows_its_chart_and_links_back(make_app, fake_host, clock):
    client = fleet_app(make_app, ["build-1", "build-2"]).test_client()
    prune(client, "build-1")
    clock.advance(21600)
    fake_host.execution = DOCKER_DOWN
    prune(client, "build-1")

    response = client.get("/status/build-1", headers={"Accept": BROWSER})

    assert response.status_code == 200
    assert response.content_type.startswith("text/html")
    page = response.get_data(as_text=True)
    assert "build-1 (ci@build-1.example:22)" in page
    assert (
        page.count('class="bar-') == 2 and 'class="bar-ok"' in page and 'class="bar-failed"' in page
    )
    assert "docker_unavailable" in page
    assert 'href="/status">← all 2 build hosts' in page
    assert "build-2" not in page  # its own runs only


ROW = re.compile(r'<tr>\s*<td title="([^"]*)"><a href="/status/([^"]*)">([^<]*)</a></td>')


def rows(page):
    """The target names of the fleet page's rows, in order; each links to its own page."""
    found = ROW.findall(page)
    assert all(title == href == text for title, href, text in found), found
    return [name for name, _, _ in found]


def state_of(page, name):
    row = page[page.index(f'<a href="/status/{name}">') :]
    return re.search(r'<td><b class="\w+">([^<]+)</b>', row[: row.index("</tr>")])[1]


def a_fleet_in_every_state(make_app, fake_host, clock):
    """alpha ok, bravo never pruned, charlie failed, delta's run past its lease, echo's
    previous run given up as lost (and its next in flight)."""
    app = fleet_app(make_app, ["alpha", "bravo", "charlie", "delta", "echo"])
    client = app.test_client()
    prune(client, "alpha")
    fake_host.execution = DOCKER_DOWN
    prune(client, "charlie")
    fake_host.hold()
    assert prune(client, "delta", wait=False)["decision"] == "started"
    assert prune(client, "echo", wait=False)["decision"] == "started"
    fake_host.wait_until_held(2)
    clock.advance(120 + 60 + 1)  # past the leases of both
    assert prune(client, "echo", wait=False)["decision"] == "started"
    return app


def test_the_fleet_page_lists_every_target_worst_first(make_app, fake_host, clock):
    client = a_fleet_in_every_state(make_app, fake_host, clock).test_client()

    response = client.get("/status", headers={"Accept": BROWSER})

    assert response.status_code == 200
    assert response.content_type.startswith("text/html")
    page = response.get_data(as_text=True)
    assert rows(page) == ["delta", "charlie", "echo", "bravo", "alpha"]
    states = {name: state_of(page, name) for name in rows(page)}
    assert states == {
        "delta": "lease expired",
        "charlie": "failed",
        "echo": "lost",
        "bravo": "never pruned",
        "alpha": "ok",
    }
    assert "run 3 past its lease" in page  # delta's
    assert 'class="tag">pruning' in page  # echo's run after the lost one
    assert "docker_unavailable" in page and "1.5GB" in page
    listed = [t["name"] for t in client.get("/status").get_json()["targets"]]
    assert listed == rows(page)  # the JSON's order


def test_each_row_links_to_its_hosts_page(make_app, fake_host, clock):
    client = a_fleet_in_every_state(make_app, fake_host, clock).test_client()
    page = client.get("/status", headers={"Accept": BROWSER}).get_data(as_text=True)

    for name in rows(page):
        host = client.get(f"/status/{name}", headers={"Accept": BROWSER})
        assert host.status_code == 200, name
        shown = host.get_data(as_text=True)
        assert f"{name} (ci@{name}.example:22)" in shown
        assert 'href="/status">← all 5 build hosts' in shown
        ran = name != "bravo"
        assert ('class="bar-' in shown) == ran and ("No runs yet." in shown) != ran


@pytest.mark.parametrize("accept", [BROWSER, "application/json"])
@pytest.mark.parametrize("name", ["nowhere", "ALPHA", "alpha.example", "<b>x"])
def test_an_unknown_hosts_page_is_404(make_app, accept, name):
    client = fleet_app(make_app, ["alpha", "bravo"]).test_client()

    response = client.get(f"/status/{name}", headers={"Accept": accept})

    assert response.status_code == 404
    assert response.is_json and response.get_json()["error"] == "unknown_target"
    assert response.headers["Content-Security-Policy"] == LOCKED


def test_the_fleet_page_escapes_what_hosts_answered(make_app, fake_host):
    client = fleet_app(make_app, ["alpha", "bravo"]).test_client()
    fake_host.execution = Execution(1, "", "<img src=x onerror=alert(1)> \"' & done\n", 0.1)
    prune(client, "alpha")

    page = client.get("/status", headers={"Accept": BROWSER}).get_data(as_text=True)

    assert "<img" not in page
    escaped = "rc=1: &lt;img src=x onerror=alert(1)&gt; &#34;&#39; &amp; done"
    assert f'<td title="{escaped}"><b class="bad">exit_status</b> {escaped}</td>' in page


def test_the_fleet_page_lets_in_only_its_own_style_block(make_app):
    client = fleet_app(make_app, ["alpha", "bravo"]).test_client()
    response = client.get("/status", headers={"Accept": BROWSER})
    policy = response.headers["Content-Security-Policy"]
    nonce = re.fullmatch(re.escape(LOCKED) + r"; style-src 'nonce-([A-Za-z0-9_-]{22,})'", policy)
    assert nonce, policy
    page = response.get_data(as_text=True)
    assert page.count("<style") == page.count(f'<style nonce="{nonce[1]}">') == 1
    assert "<script" not in page and " style=" not in page


def test_the_fleet_page_shows_200_hosts_one_line_each(make_app, fake_host, clock):
    names = [f"build-{n:03d}" for n in range(200)]
    client = fleet_app(make_app, names).test_client()
    fake_host.execution = DOCKER_DOWN
    for name in names[::20]:
        prune(client, name)

    page = client.get("/status", headers={"Accept": BROWSER}).get_data(as_text=True)

    assert rows(page)[:10] == names[::20]  # the failed ones on top
    assert sorted(rows(page)) == names
    assert "10 failed" in page and "190</b>" in page  # never pruned
    assert len(page) < 200 * 1024  # about 1 KB a row


def test_the_fleet_page_renders_in_chromium_with_nothing_blocked(
    make_app, fake_host, clock, tmp_path, chromium
):
    app = a_fleet_in_every_state(make_app, fake_host, clock)
    try:
        browser = in_chromium(chromium, app, "/status", tmp_path)
    finally:
        fake_host.release.set()

    assert "Content Security Policy" not in browser.stderr
    assert rows(browser.stdout) == ["delta", "charlie", "echo", "bravo", "alpha"]
