"""prunehook: prunes BuildKit build cache on build hosts when a watchdog or cron asks.

Layout: `core/` decides and reads (no I/O imports), `store/` keeps the state,
`remote/` reaches build hosts, `web/` is the HTTP layer, `service.py` decides and
claims between them, `runs.py` runs what was claimed, `app.py` wires them, `cli/` holds
the operator's commands (`commands.py` names them). Importing a part never imports the
others: `import webhook.core.decision` pulls in neither Flask nor sqlite3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(*args: Any, **kwargs: Any) -> Flask:
    """The Flask app (see `webhook.app.create_app`)."""
    from webhook.app import create_app as build

    return build(*args, **kwargs)
