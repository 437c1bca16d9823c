"""A hook token generated on first start, so `make run` works and the hooks are never open."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from webhook.config import ConfigError
from webhook.core.signatures import MIN_KEY_BYTES

TOKEN_FILE = "hook-token"  # noqa: S105 (a file name, not a secret)
INSTANCE_PATH = "PRUNEHOOK_INSTANCE_PATH"


def ensure_token(instance_path: str | os.PathLike[str]) -> tuple[str, Path, bool]:
    """The token kept in the instance folder, its file, and whether this call made it
    (created 0600 when missing).

    Raises ConfigError naming PRUNEHOOK_INSTANCE_PATH when the folder cannot be made or
    written to, or naming the file when it cannot be trusted.
    """
    folder = _instance_folder(instance_path)
    path = folder / TOKEN_FILE
    made = not os.path.lexists(path) and _made(folder, path)
    return _trusted_token(path), path, made


def check_token(instance_path: str | os.PathLike[str]) -> None:
    """Raises what ensure_token would, without making the token: gunicorn's master checks
    before it forks, and the worker that makes the token says where it is."""
    folder = _instance_folder(instance_path)
    path = folder / TOKEN_FILE
    if os.path.lexists(path):
        _trusted_token(path)
    elif not os.access(folder, os.W_OK | os.X_OK):
        raise _unusable(folder, "cannot be written to")


def _instance_folder(instance_path: str | os.PathLike[str]) -> Path:
    """The instance folder, made when missing; ConfigError names PRUNEHOOK_INSTANCE_PATH when
    it cannot be."""
    folder = Path(instance_path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _unusable(folder, f"cannot be made: {error.strerror}") from error
    return folder


def _made(folder: Path, path: Path) -> bool:
    """Whether a new token was put at `path`. Several gunicorn workers start at once: the
    file is written under a private name and linked into place, so every worker reads the
    same complete token."""
    draft = folder / f".{TOKEN_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    try:
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as error:
        raise _unusable(folder, f"cannot be written to: {error.strerror}") from error
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")
    try:
        os.link(draft, path)
    except FileExistsError:  # another worker's is in place
        return False
    finally:
        draft.unlink(missing_ok=True)
    return True


def _unusable(folder: Path, why: str) -> ConfigError:
    return ConfigError(
        {
            INSTANCE_PATH: [
                f"the instance folder {folder} {why}; set {INSTANCE_PATH} to a folder"
                " this user may write to"
            ]
        }
    )


def _untrusted(path: Path, why: str) -> ConfigError:
    return ConfigError({str(path): [why]})


def _trusted_token(path: Path) -> str:
    """The file's token, when only the current user could have written or read it and it is
    long enough."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as error:
        if os.path.islink(path):
            raise _untrusted(path, "is a symlink; the token file must be a plain file") from None
        raise _untrusted(path, f"cannot be read: {error.strerror}") from error
    with os.fdopen(descriptor) as handle:
        # checked on the open file, so it cannot be swapped between the check and the read
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise _untrusted(path, "is not a plain file")
        if info.st_uid != os.geteuid():
            owner = f"is owned by uid {info.st_uid}, not by this user ({os.geteuid()})"
            raise _untrusted(path, owner)
        if info.st_mode & 0o077:
            mode = stat.S_IMODE(info.st_mode)
            raise _untrusted(path, f"others can read or write it (mode {mode:04o}): chmod 600 it")
        token = handle.read().strip()
    if len(token.encode()) < MIN_KEY_BYTES:
        problem = "is empty" if not token else f"holds a {len(token.encode())}-byte token"
        raise _untrusted(path, f"{problem}; delete it to have a new token generated")
    return token
