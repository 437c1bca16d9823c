"""gunicorn settings fit for a prune that runs in the background of a worker.

gthread workers keep answering while a prune thread waits on SSH; the worker
timeouts sit above the prune timeout so a graceful stop lets a running prune
finish and record its result.
"""

import os


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
