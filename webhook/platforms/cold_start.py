"""What a function platform's cold start does before it hands requests to the app.

A platform freezes the CPU once a request is answered and keeps no disk between cold
starts, so its app must:
- finish each run inside the request that started it (PRUNEHOOK_WAIT_FOR_RUN, forced on);
- keep its state in PostgreSQL (PRUNEHOOK_DATABASE_URL, or the platform's DATABASE_URL):
  without one it refuses to start, naming the variable, instead of pruning with a state
  that is lost at the next cold start;
- take the host key from a variable when no file can be mounted (AWS Lambda):
  PRUNEHOOK_SSH_KNOWN_HOSTS_TEXT is written to a private file for PRUNEHOOK_SSH_KNOWN_HOSTS.
The SSH key already comes as text (PRUNEHOOK_SSH_KEY) or a mounted file (_SSH_KEY_FILE).
"""

from __future__ import annotations

import logging
import os
import tempfile

from environs import Env
from flask import Flask
from marshmallow import fields

from webhook.app import create_app
from webhook.config import DOTENV, PREFIX, ConfigError, load_settings
from webhook.logs import configure_logging

log = logging.getLogger("webhook")

DATABASE_URL = f"{PREFIX}DATABASE_URL"
KNOWN_HOSTS = f"{PREFIX}SSH_KNOWN_HOSTS"
KNOWN_HOSTS_TEXT = f"{PREFIX}SSH_KNOWN_HOSTS_TEXT"
WAIT_FOR_RUN = f"{PREFIX}WAIT_FOR_RUN"


def build_app(platform: str) -> Flask:
    """The app for `platform` (named in messages), configured from the environment and `.env`
    as every prunehook is; raises ConfigError naming the variable that is missing or wrong."""
    configure_logging()  # the platform's log takes JSON lines from the first one on
    env = Env()
    env.read_env(DOTENV, recurse=False)
    _known_hosts_from_text(env)
    _wait_for_runs(platform, env)
    settings, warnings = load_settings(DOTENV)
    if not settings.server.database_url:
        raise ConfigError(
            {
                DATABASE_URL: [
                    f"{platform} keeps no disk between cold starts: set it (or DATABASE_URL)"
                    " to a postgresql:// URL for the state"
                ]
            }
        )
    return create_app(settings, warnings=warnings)


def _wait_for_runs(platform: str, env: Env) -> None:
    """A run left in the background after the answer would stall with the frozen CPU."""
    # the false values the setting's own field reads as false
    value = env.str(WAIT_FOR_RUN, "").strip()
    if value in fields.Boolean.falsy:
        log.warning(
            "%s=%s is ignored on %s: runs finish inside the request", WAIT_FOR_RUN, value, platform
        )
    os.environ[WAIT_FOR_RUN] = "true"


def _known_hosts_from_text(env: Env) -> None:
    """Write PRUNEHOOK_SSH_KNOWN_HOSTS_TEXT to a file of this process's own, readable by this
    user only, and point PRUNEHOOK_SSH_KNOWN_HOSTS at it; never logged."""
    text = env.str(KNOWN_HOSTS_TEXT, "").strip()
    if not text:
        return
    if env.str(KNOWN_HOSTS, "").strip():
        where = "the environment" if os.environ.get(KNOWN_HOSTS, "").strip() else DOTENV
        why = f"set either {KNOWN_HOSTS_TEXT} or {KNOWN_HOSTS} (set in {where})"
        raise ConfigError({KNOWN_HOSTS_TEXT: [why]})
    # mkstemp creates the file 0600 in the platform's writable temporary folder (/tmp)
    descriptor, path = tempfile.mkstemp(prefix="prunehook-known_hosts-")
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text + "\n")
    os.environ[KNOWN_HOSTS] = path
    os.environ[KNOWN_HOSTS_TEXT] = ""  # consumed: load_settings warns of it on a server only
