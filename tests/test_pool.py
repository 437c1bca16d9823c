"""The thread pool the runs and the watch share: work is known by its key until it is done."""

from __future__ import annotations

import threading

from webhook.pool import Pool


def test_work_is_busy_under_its_key_until_it_is_done():
    pool, release = Pool(2, "test"), threading.Event()
    pool.submit("build-1", release.wait, 30)
    assert pool.busy("build-1") and not pool.busy("build-2")
    release.set()
    pool.wait("build-1", 30)
    assert not pool.busy("build-1")


def test_join_all_waits_for_every_piece_of_work_however_many_queue():
    pool, done, release = Pool(1, "test"), [], threading.Event()
    pool.submit(0, release.wait, 30)
    for key in range(1, 5):
        pool.submit(key, done.append, key)
    assert pool.busy(0) and pool.busy(4)  # the first under way, the rest queued behind it
    release.set()
    pool.join_all(30)
    assert done == [1, 2, 3, 4]
    assert not any(pool.busy(key) for key in range(5))
