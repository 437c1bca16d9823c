"""Telling listeners (metrics, notifications) what happened: each in turn, and one that
raises is logged while the others are still told; what they were told about goes on."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable


def tell(
    listeners: Iterable[Callable[..., object]],
    *told: object,
    log: logging.Logger,
    about: str = "",
) -> None:
    for listener in listeners:
        try:
            listener(*told)
        except Exception:
            log.exception("%s%r failed", about, listener)
