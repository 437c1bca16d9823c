"""The commands of one run on one connection: what a run needs of a host.

`webhook.remote.ssh.SSHSession` is the real one; `CommandSession` adapts a runner of
single commands (the service tests' fake host) to it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from webhook.core.outcome import ErrorKind, Execution
from webhook.core.targets import Target

# failures after which no later command of the session can run
CONNECTION_LOST = frozenset({ErrorKind.SSH_ERROR, ErrorKind.EXEC_TIMEOUT})


class Session(Protocol):
    @property
    def alive(self) -> bool: ...

    def execute(self, command: str, timeout_s: float | None = None) -> Execution: ...

    def close(self) -> None: ...


OpenSession = Callable[[Target], Session]
Execute = Callable[[Target, str], Execution]


class Stopped(Exception):
    """The run cannot go on: its connection is lost, or another run owns the target."""


class CommandSession:
    """Each command is one call of `send`; after a connection failure, later
    commands are not tried."""

    def __init__(self, send: Execute, target: Target):
        self.send = send
        self.target = target
        self._failed: Execution | None = None

    @property
    def alive(self) -> bool:
        return self._failed is None

    def execute(self, command: str, timeout_s: float | None = None) -> Execution:
        if self._failed is not None:
            return self._failed
        execution = self.send(self.target, command)
        if not execution.logged_in or execution.error_kind in CONNECTION_LOST:
            self._failed = execution
        return execution

    def close(self) -> None:
        pass
