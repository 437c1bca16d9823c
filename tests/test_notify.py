"""Notifications through apprise: a real HTTP receiver on loopback takes apprise's json://
messages (and stands in for Telegram's API); a run never waits for them."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import AUTH, TOKEN
from tests.harness import REPO
from tests.test_forecast_shown import GB, SIZE, filling
from tests.test_metrics import metrics_of, scrape
from webhook.config import ConfigError, load_settings
from webhook.core.disk import FreeGoal
from webhook.core.notices import Notice, NoticePolicy, Reason, Severity
from webhook.core.outcome import ErrorKind, Execution, RunOutcome
from webhook.core.targets import Target
from webhook.destinations import Delivery
from webhook.notify import Notifier

BOT_TOKEN = "123456:bot-secret-token"
CHAT_ID = "-100200300"
# what a json:// URL may carry that must stay out of logs, /status and /metrics
PASSWORD = "hunter2-secret-password"
PATH_TOKEN = "path-secret-token-0042"
AUTH_FAILED = Execution(None, "", "", 0.1, ErrorKind.AUTH_FAILED, "Authentication failed.")
RETRY_S = 601  # past PRUNEHOOK_RETRY_AFTER_S: the next trigger runs again
SMALL_CACHE_DF = (
    "TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE\n"
    "Build Cache     3         0         300MB     300MB\n"
)


class Receiver(ThreadingHTTPServer):
    """An HTTP endpoint on loopback that records every POST; with `hang`, it holds each
    request until `release` is set."""

    daemon_threads = True

    def __init__(self, status: int = 200, hang: bool = False):
        self.status = status
        self.hang = hang
        self.received: list[tuple[str, dict]] = []
        self.arrived = threading.Event()
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((self.path, json.loads(body)))
                outer.arrived.set()
                if outer.hang:
                    outer.release.wait(60)
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}')

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def json_url(self, path: str = "/hook") -> str:
        return f"json://127.0.0.1:{self.port}{path}"

    def messages(self) -> list[dict]:
        return [body for _, body in self.received]


@pytest.fixture
def receiver():
    started: list[Receiver] = []

    def start(status: int = 200, hang: bool = False) -> Receiver:
        server = Receiver(status, hang)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.release.set()
        server.shutdown()
        server.server_close()


def refused_url() -> str:
    """A json:// URL of a loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"json://127.0.0.1:{port}/hook"


def notifying(make_app, *urls: str, **settings):
    app = make_app(notify_urls=urls, **settings)
    return app, app.test_client()


def flush(app) -> None:
    assert app.extensions["prunehook"].notifier.flush(30)


def notifications(client) -> dict[tuple[str, str, str], float]:
    """prunehook_notifications_total by (result, reason, scheme)."""
    return {
        (labels["result"], labels["reason"], labels["scheme"]): value
        for (name, labels_tuple), value in metrics_of(client).items()
        if name == "prunehook_notifications_total"
        for labels in [dict(labels_tuple)]
    }


def run_once(client) -> dict:
    answer = client.post("/hooks/cron?wait=1", headers=AUTH).get_json()
    assert answer["decision"] == "started", answer
    return answer["run"]


# -- a reclaim over the threshold -----------------------------------------------------
def test_a_reclaim_over_the_threshold_is_sent_to_the_json_receiver(make_app, receiver):
    server = receiver()
    app, client = notifying(make_app, server.json_url(), notify_min_gb=1)
    assert run_once(client)["result"] == "ok"
    flush(app)
    [(path, message)] = server.received
    assert path == "/hook"
    assert message["title"] == "prunehook: reclaimed 1.5GB on 127.0.0.1"
    assert "reclaimed 1.5GB (1500000000 bytes)" in message["message"]
    assert message["type"] == "success"
    assert notifications(client) == {("sent", "reclaimed", "json"): 1}


def test_a_reclaim_under_the_threshold_stays_silent(make_app, receiver):
    server = receiver()
    app, client = notifying(make_app, server.json_url(), notify_min_gb=2)
    assert run_once(client)["result"] == "ok"
    flush(app)
    assert server.received == []
    assert notifications(client) == {}


def test_every_destination_gets_the_message(make_app, receiver):
    first, second = receiver(), receiver()
    app, client = notifying(make_app, first.json_url(), second.json_url("/b"), notify_min_gb=1)
    run_once(client)
    flush(app)
    assert [path for path, _ in first.received + second.received] == ["/hook", "/b"]
    assert notifications(client) == {("sent", "reclaimed", "json"): 2}


# -- failures in a row -----------------------------------------------------------------
def test_the_third_failure_in_a_row_is_sent_once_and_a_success_starts_anew(
    make_app, receiver, fake_host, clock
):
    server = receiver()
    app, client = notifying(make_app, server.json_url(), notify_failures=3)
    fake_host.execution = AUTH_FAILED
    told_after = []
    for _ in range(5):
        assert run_once(client)["result"] == "failed"
        flush(app)
        told_after.append(len(server.received))
        clock.advance(RETRY_S)
    assert told_after == [0, 0, 1, 1, 1]
    (message,) = server.messages()
    assert message["title"] == "prunehook: 3 failed prunes in a row on 127.0.0.1"
    assert "auth_failed: Authentication failed." in message["message"]
    assert message["type"] == "failure"

    fake_host.execution = Execution(0, "Total reclaimed space: 0B\n", "", 0.1)
    run_once(client)  # a success ends the streak (below the reclaim threshold: silent)
    clock.advance(21600)
    fake_host.execution = AUTH_FAILED
    for _ in range(3):
        run_once(client)
        clock.advance(RETRY_S)
    flush(app)
    assert len(server.received) == 2
    assert notifications(client) == {("sent", "failures", "json"): 2}


def test_the_streak_is_read_from_the_store_so_it_holds_across_workers(
    make_app, receiver, fake_host, clock
):
    """Two apps on one database stand for two gunicorn workers (or replicas): two failures
    in one and the third in the other make three in a row."""
    server = receiver()
    one, one_client = notifying(make_app, server.json_url(), notify_failures=3)
    other, other_client = notifying(make_app, server.json_url(), notify_failures=3)
    fake_host.execution = AUTH_FAILED
    for client in (one_client, one_client, other_client):
        run_once(client)
        clock.advance(RETRY_S)
    flush(one)
    flush(other)
    assert len(server.received) == 1
    assert notifications(other_client) == {("sent", "failures", "json"): 1}


def test_a_critical_start_that_pruned_nothing_does_not_end_a_failure_streak(
    make_app, receiver, fake_host, clock
):
    server = receiver()
    app, client = notifying(make_app, server.json_url(), notify_failures=2, retry_after_s=3600)
    fake_host.execution = AUTH_FAILED
    assert run_once(client)["result"] == "failed"
    for _ in range(3):  # critical_interval_s apart, stale: the host's df says 60 % used
        clock.advance(900)
        body = {"host": "127.0.0.1", "used_percent": 100}
        stale = client.post("/hooks/watchdog?wait=1", headers=AUTH, json=body).get_json()
        assert (stale["run"]["result"], stale["run"]["needed"]) == ("ok", False)
    clock.advance(900)
    assert run_once(client)["result"] == "failed"
    flush(app)
    (message,) = server.messages()
    assert message["title"] == "prunehook: 2 failed prunes in a row on 127.0.0.1"


# -- never in the way of a run ---------------------------------------------------------
def test_a_hanging_receiver_delays_neither_the_answer_nor_the_record(
    make_app, receiver, fake_host, clock
):
    server = receiver(hang=True)
    # apprise waits 4 s for an answer unless the URL says otherwise (rto): here, 60 s
    url = server.json_url() + "?rto=60"
    app, client = notifying(make_app, url, notify_failures=1, notify_timeout_s=30)
    hook = app.extensions["prunehook"]
    store = hook.service.store
    fake_host.execution = AUTH_FAILED
    run_once(client)
    assert server.arrived.wait(10)  # the sender is now held inside apprise, for up to 30 s
    clock.advance(RETRY_S)

    started = time.monotonic()
    second = run_once(client)
    assert time.monotonic() - started < 10  # generous: it waits for nothing of the receiver's
    assert not hook.notifier.flush(0)  # the first run's notification is still being sent
    assert second["result"] == "failed"
    assert store.run(second["id"]).result == "failed"
    assert store.recent_runs("127.0.0.1")[0].id == second["id"]


def test_a_receiver_that_never_answers_is_given_up_and_counted_as_failed(
    make_app, receiver, fake_host, caplog
):
    server = receiver(hang=True)
    app, client = notifying(make_app, server.json_url(), notify_min_gb=1, notify_timeout_s=0.5)
    with caplog.at_level(logging.INFO, logger="webhook.notify"):
        assert run_once(client)["result"] == "ok"
        flush(app)
    assert notifications(client) == {("failed", "reclaimed", "json"): 1}
    assert "notification reclaimed for 127.0.0.1 to json #1 failed: timeout" in caplog.text
    assert client.get("/status").get_json()["last_error"] is None


def test_a_refused_connection_is_counted_as_failed_and_the_next_destination_still_gets_it(
    make_app, receiver, caplog
):
    server = receiver()
    app, client = notifying(make_app, refused_url(), server.json_url(), notify_min_gb=1)
    assert run_once(client)["result"] == "ok"
    flush(app)
    assert len(server.received) == 1
    assert notifications(client) == {
        ("failed", "reclaimed", "json"): 1,
        ("sent", "reclaimed", "json"): 1,
    }
    assert "to json #1 failed: failure" in caplog.text


def test_an_error_status_is_counted_as_failed(make_app, receiver):
    server = receiver(status=500)
    app, client = notifying(make_app, server.json_url(), notify_min_gb=1)
    assert run_once(client)["result"] == "ok"
    flush(app)
    assert len(server.received) == 1
    assert notifications(client) == {("failed", "reclaimed", "json"): 1}


@dataclass
class HeldDestination:
    """Holds each send until released, so the queue behind it fills."""

    scheme: str = "held"

    def __post_init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.sent: list[str] = []

    def send(self, notice: Notice, timeout_s: float) -> Delivery:
        self.entered.set()
        self.release.wait(30)
        self.sent.append(notice.title)
        return Delivery(True)


def test_a_full_queue_drops_the_notice_with_a_log_line_and_counts_it(caplog):
    held = HeldDestination()
    counted: list[tuple[str, str, str]] = []
    notifier = Notifier([held], NoticePolicy(), queue_size=1, counted=lambda *c: counted.append(c))
    notice = Notice("b", Reason.RECLAIMED, Severity.SUCCESS, "t", "body")
    try:
        assert notifier.submit(notice)
        assert held.entered.wait(10)  # the sender took the first: the queue is empty again
        assert notifier.submit(notice)  # fills the queue
        assert not notifier.submit(notice)
    finally:
        held.release.set()
    assert notifier.flush(10)
    assert len(held.sent) == 2
    assert counted.count(("dropped", "reclaimed", "held")) == 1
    assert counted.count(("sent", "reclaimed", "held")) == 2
    assert "notification reclaimed for b dropped: 1 are waiting to be sent" in caplog.text


def test_a_destination_that_raises_is_a_failure_not_a_dead_sender():
    class Raising:
        scheme = "boom"

        def send(self, notice, timeout_s):
            raise RuntimeError("boom")

    counted: list[tuple[str, str, str]] = []
    notifier = Notifier([Raising()], NoticePolicy(), counted=lambda *c: counted.append(c))
    notice = Notice("b", Reason.FAILURES, Severity.FAILURE, "t", "body")
    notifier.submit(notice)
    notifier.submit(notice)
    assert notifier.flush(10)
    assert counted == [("failed", "failures", "boom")] * 2


# -- free space still short ------------------------------------------------------------
def test_free_space_still_short_is_sent_from_an_outcome_that_says_so(receiver, make_settings):
    server = receiver()
    settings = make_settings(notify_urls=(server.json_url(),))
    notifier = Notifier.from_settings(settings.notify)
    target = settings.targets.env_target
    assert isinstance(target, Target)
    outcome = RunOutcome(True, 0, "0B", 0, None, None, 0.2, "", "", free_short_bytes=3 * 10**9)
    notifier(target, outcome)
    assert notifier.flush(30)
    (message,) = server.messages()
    assert message["type"] == "warning"
    assert "still 3GB (3000000000 bytes) short of min_free" in message["message"]


# -- Telegram's variables --------------------------------------------------------------
def test_telegram_variables_with_an_api_server_of_your_own_still_deliver(make_app, receiver):
    """apprise's tgram:// always calls api.telegram.org: for PRUNEHOOK_TELEGRAM_API_BASE the
    one request is sent directly, as before apprise."""
    server = receiver()
    app, client = notifying(
        make_app,
        notify_min_gb=1,
        telegram_bot_token=BOT_TOKEN,
        telegram_chat_id=CHAT_ID,
        telegram_api_base=server.base,
    )
    run_once(client)
    flush(app)
    [(path, message)] = server.received
    assert path == f"/bot{BOT_TOKEN}/sendMessage"
    assert message["chat_id"] == CHAT_ID
    assert "reclaimed 1.5GB on 127.0.0.1" in message["text"]
    assert client.get("/status").get_json()["notify"]["schemes"] == ["tgram"]
    assert notifications(client) == {("sent", "reclaimed", "tgram"): 1}


def test_telegram_variables_become_a_tgram_url_that_apprise_delivers(
    make_app, receiver, monkeypatch
):
    """With Telegram's own API the variables go through apprise's tgram:// plugin. It has no
    setting for another host, so this test alone points the plugin at the stand-in."""
    from apprise.plugins.telegram import NotifyTelegram

    server = receiver()
    monkeypatch.setattr(NotifyTelegram, "notify_url", f"{server.base}/bot")
    app, client = notifying(
        make_app, notify_min_gb=1, telegram_bot_token=BOT_TOKEN, telegram_chat_id=CHAT_ID
    )
    run_once(client)
    flush(app)
    [(path, message)] = server.received
    assert path == f"/bot{BOT_TOKEN}/sendMessage"
    assert message["chat_id"] == int(CHAT_ID)
    assert "prunehook: reclaimed 1.5GB on 127.0.0.1" in message["text"]
    assert notifications(client) == {("sent", "reclaimed", "tgram"): 1}


def test_a_failing_telegram_never_fails_the_run(make_app, receiver, caplog):
    server = receiver(status=500)
    app, client = notifying(
        make_app,
        notify_min_gb=1,
        telegram_bot_token=BOT_TOKEN,
        telegram_chat_id=CHAT_ID,
        telegram_api_base=server.base,
    )
    assert run_once(client)["result"] == "ok"
    flush(app)
    assert len(server.received) == 1
    assert "to tgram #1 failed: HTTP 500" in caplog.text
    assert BOT_TOKEN not in caplog.text
    assert client.get("/status").get_json()["last_error"] is None


# -- secrets ---------------------------------------------------------------------------
def test_no_secret_of_a_url_reaches_the_logs_status_or_metrics(
    make_app, receiver, fake_host, clock, caplog
):
    server = receiver()
    secret_url = f"json://ci:{PASSWORD}@127.0.0.1:{server.port}/hook/{PATH_TOKEN}"
    refused = refused_url().replace("/hook", f"/{PATH_TOKEN}")
    with caplog.at_level(logging.DEBUG):
        app, client = notifying(
            make_app,
            secret_url,
            refused,
            notify_min_gb=1,
            notify_failures=1,
            telegram_bot_token=BOT_TOKEN,
            telegram_chat_id=CHAT_ID,
            telegram_api_base=refused.replace("json://", "http://").removesuffix(f"/{PATH_TOKEN}"),
        )
        run_once(client)
        clock.advance(21600)
        fake_host.execution = AUTH_FAILED
        run_once(client)
        flush(app)
        status = client.get("/status").get_data(as_text=True)
        metrics = client.get("/metrics").get_data(as_text=True)
    assert len(server.received) == 2
    assert "failed" in caplog.text  # the refused destinations were logged...
    for secret in (PASSWORD, PATH_TOKEN, BOT_TOKEN, "bot-secret-token"):
        assert secret not in caplog.text  # ...without their secrets
        assert secret not in status
        assert secret not in metrics
    assert json.loads(status)["notify"] == {
        "schemes": ["json", "json", "tgram"],
        "min_gb": 1,
        "failures": 1,
    }


def test_a_url_apprise_cannot_use_refuses_to_start_without_echoing_it(monkeypatch, caplog):
    monkeypatch.setenv("PRUNEHOOK_NOTIFY_URLS", f"json://127.0.0.1/ok tgram://{PATH_TOKEN}")
    with caplog.at_level(logging.DEBUG), pytest.raises(ConfigError) as raised:
        load_settings()
    assert list(raised.value.errors) == ["PRUNEHOOK_NOTIFY_URLS"]
    assert "URL 2 (tgram://)" in str(raised.value)
    assert PATH_TOKEN not in str(raised.value)
    assert PATH_TOKEN not in caplog.text  # apprise logs the URL it cannot parse: masked


@pytest.mark.parametrize(
    ("variable", "token", "chat"),
    [
        ("PRUNEHOOK_TELEGRAM_BOT_TOKEN", "bad-token-value", CHAT_ID),
        ("PRUNEHOOK_TELEGRAM_CHAT_ID", BOT_TOKEN, "no such chat!"),
    ],
)
def test_telegram_variables_apprise_cannot_use_refuse_to_start(monkeypatch, variable, token, chat):
    monkeypatch.setenv("PRUNEHOOK_TELEGRAM_BOT_TOKEN", token)
    monkeypatch.setenv("PRUNEHOOK_TELEGRAM_CHAT_ID", chat)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert list(raised.value.errors) == [variable]
    assert token not in str(raised.value)


def test_notify_urls_are_read_space_separated_and_kept_out_of_the_repr(monkeypatch):
    monkeypatch.setenv("PRUNEHOOK_NOTIFY_URLS", f" json://127.0.0.1/a\n  jsons://{PATH_TOKEN}@x/b ")
    settings, warnings = load_settings()
    assert settings.notify.urls == ("json://127.0.0.1/a", f"jsons://{PATH_TOKEN}@x/b")
    assert (settings.notify.failures, warnings) == (3, [])
    assert PATH_TOKEN not in repr(settings)


@pytest.mark.parametrize("value", ["-1", "2.5", "three", "51"])
def test_a_bad_failure_count_warns_and_uses_3(monkeypatch, value):
    monkeypatch.setenv("PRUNEHOOK_NOTIFY_FAILURES", value)
    settings, warnings = load_settings()
    assert settings.notify.failures == 3
    assert [w.split("=")[0] for w in warnings] == ["PRUNEHOOK_NOTIFY_FAILURES"]


# -- a process that ends ---------------------------------------------------------------
def test_flask_prune_sends_before_it_returns(make_app, receiver):
    server = receiver()
    app = make_app(notify_urls=(server.json_url(),), notify_min_gb=1)
    result = app.test_cli_runner().invoke(args=["prune"])
    assert result.exit_code == 0, result.output
    assert len(server.received) == 1  # no flush here: the command waited for it


def test_a_stopping_worker_lets_its_run_finish_and_sends_its_notice(receiver, tmp_path):
    """The run is in flight when the worker stops (gunicorn's worker_exit calls join_all):
    it finishes, then its notice is sent, before the process ends."""
    server = receiver()
    script = f"""
import time
from webhook import create_app
from webhook.config import Settings
from webhook.core.outcome import Execution
from webhook.core.triggers import Source, Trigger

def slow_host(target, command):
    time.sleep(0.5)
    return Execution(0, "Total reclaimed space: 1.5GB\\n", "", 0.5)

settings = Settings.from_values(
    ssh_host="127.0.0.1", ssh_key="unused", token={TOKEN!r}, db_path={str(tmp_path / "db")!r},
    notify_urls=({server.json_url()!r},), notify_min_gb=1,
)
app = create_app(settings, execute=slow_host, instance_path={str(tmp_path / "i")!r})
trigger = Trigger(Source.CLI, True, "a process that ends")
assert app.extensions["prunehook"].service.handle(trigger).answer == "started"
app.extensions["prunehook"].join_all()
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert [m["title"] for m in server.messages()] == ["prunehook: reclaimed 1.5GB on 127.0.0.1"]


def test_under_gunicorn_a_worker_sends_and_every_worker_counts_it(serve, receiver, tmp_path):
    """A forked worker starts its own sender thread; the count adds up whichever answers."""
    server = receiver()
    key = tmp_path / "id_ed25519"
    key.write_text("not a key: this run fails before it connects\n")
    served = serve(
        {
            "PRUNEHOOK_TOKEN": TOKEN,
            "PRUNEHOOK_DB_PATH": str(tmp_path / "state.sqlite3"),
            "PRUNEHOOK_SSH_HOST": "127.0.0.1",
            "PRUNEHOOK_SSH_KEY_FILE": str(key),
            "PRUNEHOOK_SSH_KNOWN_HOSTS": str(tmp_path / "no_known_hosts"),
            "PRUNEHOOK_NOTIFY_URLS": server.json_url(),
            "PRUNEHOOK_NOTIFY_FAILURES": "1",
        },
        workers=2,
    )
    status, answer = served.call("/hooks/cron?wait=1")
    assert (status, answer["run"]["result"]) == (200, "failed")
    assert server.arrived.wait(30)
    (message,) = server.messages()
    assert message["title"] == "prunehook: a prune failed on 127.0.0.1"
    assert served.status()["notify"]["schemes"] == ["json"]
    sent = (
        "prunehook_notifications_total",
        (("reason", "failures"), ("result", "sent"), ("scheme", "json")),
    )
    deadline = time.monotonic() + 30
    while scrape(served.raw("/metrics")).get(sent) != 1:  # counted just after it was sent
        assert time.monotonic() < deadline
        time.sleep(0.1)
    for _ in range(6):  # whichever worker answers the scrape
        assert scrape(served.raw("/metrics"))[sent] == 1


def test_a_run_that_leaves_free_space_under_min_free_is_told(make_app, fake_host, receiver):
    """The disk-aware run itself says so: 40 GB of 100 GB free, min_free 50%; the fake
    host's df does not move, so stage 2 leaves the disk 10 GB short."""
    server = receiver()
    app, client = notifying(make_app, server.json_url(), min_free=FreeGoal(percent=50))
    run = run_once(client)
    assert (run["keep_storage_bytes"], run["goal_met"], run["free_short_bytes"]) == (
        0, False, 10_000_000_000,
    )  # fmt: skip
    flush(app)
    (message,) = server.messages()
    assert message["type"] == "warning"
    assert "still 10GB (10000000000 bytes) short of min_free" in message["message"]
    assert notifications(client)[("sent", "disk_low", "json")] == 1


# -- the watch's measures ----------------------------------------------------------------
def measure(app) -> None:
    """One measure of the watch, as a cron ping queues it, of the only target."""
    service = app.extensions["prunehook"].service
    service.watch.measure(next(iter(service.fleet)))


def df_free(free: int) -> str:
    return f"   1B-blocks       Avail\n{SIZE} {free}\n"


def test_a_run_started_ahead_of_the_forecast_says_when_the_disk_would_have_filled(
    make_app, receiver, fake_host, clock
):
    server = receiver()
    app = make_app(
        notify_urls=[server.json_url()], watch_interval_s=600, min_free=FreeGoal(size=20 * GB)
    )
    filling(app, clock)  # 32 GB free, falling 4 GB an hour
    clock.advance(900)
    fake_host.df = df_free(31 * GB)

    measure(app)
    app.extensions["prunehook"].join_all(10)
    flush(app)

    # (the run's own notice, if its raised goal was missed, may follow: Reason.DISK_LOW)
    message = server.messages()[0]
    run = app.extensions["prunehook"].service.store.recent_runs("127.0.0.1", 1)[0]
    assert run.trigger == "forecast"
    assert message["title"] == "prunehook: pruning 127.0.0.1 ahead of its forecast"
    assert message["type"] == "warning"
    assert message["message"] == (
        "127.0.0.1's disk is filling at 4GB/h (a line through 14 samples): it would have"
        " fallen under min_free at 2027-01-15 11:00 UTC (in ~3 h) and filled at"
        " 2027-01-15 16:00 UTC (in ~8 h). Run 1 was started to make room before then."
    )


def test_a_disk_short_with_too_little_cache_is_told_once_and_never_pruned(
    make_app, receiver, fake_host, clock
):
    server = receiver()
    app = make_app(
        notify_urls=[server.json_url()], watch_interval_s=600, min_free=FreeGoal(size=20 * GB)
    )
    fake_host.df = df_free(10 * GB)
    fake_host.probe_answers["docker system df"] = Execution(0, SMALL_CACHE_DF, "", 0.05)

    for _ in range(3):
        measure(app)
        clock.advance(600)
    flush(app)

    (message,) = server.messages()
    assert message["title"] == "prunehook: 127.0.0.1 is short of disk space and pruning cannot help"
    assert message["message"] == (
        "On 127.0.0.1, the disk is 10GB short of its goals, but the cache is only 300MB: no"
        " prune was started. Only build cache is pruned: what fills the rest of the disk"
        " needs a person."
    )
    assert fake_host.commands == []
    assert notifications(app.test_client()) == {("sent", "disk_low", "json"): 1}

    fake_host.df = df_free(40 * GB)  # someone made room; later the disk is short again
    measure(app)
    clock.advance(600)
    fake_host.df = df_free(10 * GB)
    measure(app)
    flush(app)
    assert len(server.messages()) == 2


def test_notify_test_sends_to_each_destination_and_says_which_failed(make_app, receiver, caplog):
    server = receiver()
    app = make_app(notify_urls=(server.json_url(), refused_url()))

    with caplog.at_level(logging.INFO, logger="webhook.notify"):
        result = app.test_cli_runner().invoke(args=["notify", "--test"])

    assert result.exit_code == 1
    assert result.output.splitlines()[0] == "json #1: sent"
    assert result.output.splitlines()[1].startswith("json #2: FAILED")
    # said once, as the command's output: not also as a log line
    assert [r for r in caplog.records if r.name == "webhook.notify"] == []
    [message] = server.messages()
    assert message["title"] == "prunehook: test notification"


def test_notify_test_without_a_destination_says_what_to_set(make_app):
    result = make_app().test_cli_runner().invoke(args=["notify", "--test"])

    assert result.exit_code == 2
    assert "no destination: set PRUNEHOOK_NOTIFY_URLS" in result.output


def test_a_notification_libraries_traceback_is_left_out_and_its_message_masked(caplog):
    """urllib3 logs a request's path (a bot token's place) with the exception it met; its
    traceback may hold a piece of the URL no mask knows, so only the masked line is kept."""
    from webhook.destinations import url_problems

    url_problems([f"json://127.0.0.1:9/{PATH_TOKEN}"])
    try:
        raise ValueError(f"header parse failed near {PATH_TOKEN[:3]}-tail-of-the-path")
    except ValueError:
        logging.getLogger("urllib3.connection").warning(
            "Failed to parse headers (url=%s)", f"/{PATH_TOKEN}/send", exc_info=True
        )
    (record,) = [r for r in caplog.records if r.name == "urllib3.connection"]
    assert PATH_TOKEN not in record.getMessage()
    assert "Failed to parse headers" in record.getMessage()
    assert record.exc_info is None
    assert "tail-of-the-path" not in caplog.text
