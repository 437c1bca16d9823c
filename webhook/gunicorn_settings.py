"""gunicorn settings fit for a prune that runs in the background of a worker: what
`prunehook serve` runs with, and gunicorn.conf.py in a clone (the Procfile's). gunicorn
runs it as a file, afresh at each start and reload; it is not imported as a module.

The configuration is checked here, in the master, before it binds or forks:
an error with no safe default stops gunicorn at once, naming the variable.
gthread workers keep answering while a prune thread waits on SSH; the worker
timeouts cover the longest run of any target (read as the app reads it, `.env`
too) so a graceful stop lets a running prune finish and record its result.
Slow clients are the reverse proxy's job (contrib/nginx/prunehook.conf). Metrics
run in prometheus_client's multiprocess mode, so /metrics adds up every
worker's counts whichever worker answers.
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

# set before anything imports prometheus_client, which reads it at import; a folder made
# here is named in _MADE too, so a reload (this file run again) still removes it at the end
_MADE = "PRUNEHOOK_METRICS_DIR_MADE"
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.environ[_MADE] = tempfile.mkdtemp(
        prefix="prunehook-metrics-"
    )
_OWN_METRICS_DIR = os.environ.get(_MADE) == os.environ["PROMETHEUS_MULTIPROC_DIR"]


def _refuse_to_start(error: Exception) -> NoReturn:
    print(error, file=sys.stderr)
    if _OWN_METRICS_DIR:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
    sys.exit(2)


# past a run's bound: the worker's exit, and the notifications it sends first
EXIT_MARGIN_S = 60


def _checked() -> tuple[int, int, float]:
    """The app's own checks of the worker and thread counts, its settings, its instance
    folder and hook token, run once before forking (exits naming what is wrong); then the
    workers, the threads a worker and the longest any target's run may take."""
    try:
        from webhook.app import check_instance
        from webhook.config import DOTENV, ConfigError, load_settings, server_counts
        from webhook.runs import run_limit_s

        workers, threads = server_counts()
        settings, _ = load_settings(DOTENV)
        check_instance(settings)
        longest = max((run_limit_s(target) for target in settings.targets.fleet), default=0.0)
        return workers, threads, longest
    except ConfigError as error:
        _refuse_to_start(error)
    finally:
        # workers import the app afresh, so a reload (HUP) serves the code on disk
        for name in [name for name in sys.modules if name.partition(".")[0] == "webhook"]:
            del sys.modules[name]


bind = os.environ.get("GUNICORN_BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")
worker_class = "gthread"
workers, threads, _longest_run_s = _checked()
# gunicorn's 1000 would sit at a usual 1024 file limit, where accept() fails
worker_connections = 512
timeout = graceful_timeout = int(_longest_run_s) + EXIT_MARGIN_S
accesslog = "-"
errorlog = "-"

# gunicorn 27 and later would put every instance's control socket at one path per user
# (~/.gunicorn/gunicorn.ctl), where instances take it over from each other
if os.environ.get("GUNICORN_CONTROL_SOCKET"):
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]
else:
    control_socket_disable = True


def on_starting(server):
    """Counters start at zero with the service, as Prometheus expects of a restart."""
    for stale in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
        stale.unlink()


def worker_exit(server, worker):
    """A stopping worker (a graceful stop, a reload) lets its runs finish and sends their
    notifications before its process ends."""
    # a worker that failed to load the app has none
    app = getattr(worker, "wsgi", None)
    extension = getattr(app, "extensions", {}).get("prunehook")
    if extension is not None:
        extension.join_all()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _OWN_METRICS_DIR:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
