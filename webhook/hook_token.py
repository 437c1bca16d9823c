"""A hook token generated on first start, so `make run` works and the hooks are never open."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

TOKEN_FILE = "hook-token"  # noqa: S105 (a file name, not a secret)


def ensure_token(instance_path: str | os.PathLike[str]) -> tuple[str, Path]:
    """The token kept in the instance folder, created (0600) when missing.

    Several gunicorn workers start at once: the file is written under a private
    name and linked into place, so every worker reads the same complete token.
    """
    folder = Path(instance_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / TOKEN_FILE
    if not path.exists():
        draft = folder / f".{TOKEN_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            with contextlib.suppress(FileNotFoundError):
                draft.unlink()
    token = path.read_text().strip()
    if not token:
        raise RuntimeError(f"{path} is empty: delete it to have a new token generated")
    return token, path
