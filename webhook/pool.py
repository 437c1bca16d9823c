"""A pool of `max_parallel` threads whose work is known by a key until it is done: the runs
by their id (`Runs`), the watch's measures by their target (`Watch`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any


class Pool:
    """Its threads finish their work before the process exits (a graceful stop)."""

    def __init__(self, max_parallel: int, name: str):
        self._executor = ThreadPoolExecutor(max_parallel, thread_name_prefix=name)
        self._futures: dict[Hashable, Future[Any]] = {}
        self._lock = threading.Lock()

    def submit(self, key: Hashable, work: Callable[..., Any], *args: Any) -> Future[Any]:
        """Queue `work`; its future is the caller's to wait on (the pool forgets it once done)."""
        with self._lock:
            self._futures = {k: f for k, f in self._futures.items() if not f.done()}
            future = self._futures[key] = self._executor.submit(work, *args)
        return future

    def busy(self, key: Hashable) -> bool:
        """Whether work under `key` is queued or under way."""
        with self._lock:
            future = self._futures.get(key)
        return future is not None and not future.done()

    def wait(self, key: Hashable, timeout: float) -> None:
        """Wait for the work under `key`, if it is queued or under way."""
        with self._lock:
            future = self._futures.get(key)
        if future is not None:
            wait([future], timeout)

    def join_all(self, timeout: float | None = None) -> None:
        """Wait for all the work submitted so far (tests, the CLI, shutdown)."""
        with self._lock:
            futures = list(self._futures.values())
        wait(futures, timeout)
