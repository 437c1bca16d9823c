"""The one command prunehook ever runs on a build host.

Only settings reach it, never a request field, and `until` is re-checked here
so that nothing but a Go duration can ever be interpolated.
"""

from __future__ import annotations

from webhook.core.duration import GO_DURATION


def build_prune_command(until: str, prune_all: bool) -> str:
    """`docker builder prune -f --filter until=<until>`, with `-a` only when asked."""
    if not GO_DURATION.match(until):
        raise ValueError(f"until={until!r} is not a Go duration")
    all_flag = " -a" if prune_all else ""
    return f"docker builder prune -f{all_flag} --filter until={until}"
