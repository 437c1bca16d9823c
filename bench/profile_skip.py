"""Profile N skip-path requests in-process (cProfile), the top entries by cumulative time."""

import cProfile
import pstats
import sys
import tempfile
from pathlib import Path

from common import TOKEN
from skip_path import prunehook_in_skip_state

N = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
with tempfile.TemporaryDirectory() as folder:
    import os

    os.environ.update(prunehook_in_skip_state(Path(folder)))
    from webhook import create_app

    app = create_app()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    client.post("/hooks/cron", headers=headers)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(N):
        client.post("/hooks/cron", headers=headers)
    profiler.disable()
    stats = pstats.Stats(profiler).sort_stats(sys.argv[2] if len(sys.argv) > 2 else "cumulative")
    stats.print_stats(35)
