"""gunicorn settings fit for a prune that runs in the background of a worker.

gthread workers keep answering while a prune thread waits on SSH; the worker
timeouts sit above the prune timeout so a graceful stop lets a running prune
finish and record its result. Metrics run in prometheus_client's multiprocess
mode, so /metrics adds up every worker's counts whichever worker answers.
"""

import os
import shutil
import tempfile
from pathlib import Path


def _prune_timeout_s() -> float:
    try:
        value = float(os.environ.get("PRUNEHOOK_TIMEOUT_S", "120"))
    except ValueError:
        return 120.0
    return value if value > 0 else 120.0


bind = os.environ.get("GUNICORN_BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = int(_prune_timeout_s()) + 60
graceful_timeout = int(_prune_timeout_s()) + 60
accesslog = "-"
errorlog = "-"

# set before any worker imports prometheus_client, which reads it at import
_OWN_METRICS_DIR = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _OWN_METRICS_DIR:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="prunehook-metrics-")


def on_starting(server):
    """Counters start at zero with the service, as Prometheus expects of a restart."""
    for stale in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
        stale.unlink()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _OWN_METRICS_DIR:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
