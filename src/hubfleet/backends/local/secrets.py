"""Secrets that are generated once and then only ever read.

A hub's cookie secret, its proxy auth token and its service API tokens must survive every restart and every
``apply``: regenerating the cookie secret logs every student out, regenerating a service token breaks whatever
holds the old one. So a secret file is created exactly once, atomically, with owner-only permissions, and an
existing file is never rewritten.
"""

from __future__ import annotations

import os
import secrets as _random
from pathlib import Path

__all__ = ["SecretFileError", "ensure_secret", "read_secret"]

_MODE = 0o600


class SecretFileError(RuntimeError):
    """A secret file exists but cannot be trusted (unreadable, empty, not hex, or open to other users)."""


def ensure_secret(path: str | os.PathLike[str], nbytes: int = 32) -> str:
    """Return the hex secret stored at ``path``, creating it (``nbytes`` random bytes, mode 0600) if absent.

    Creation uses ``O_CREAT | O_EXCL`` so two racing callers cannot both write: the loser sees ``FileExistsError``
    and reads what the winner wrote. The file is written under a temporary name and hard-linked into place, so
    a reader never sees a half-written secret (a crash mid-write leaves only a stray temp file).
    """
    path = Path(path)
    try:
        return read_secret(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = _random.token_hex(nbytes)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{_random.token_hex(4)}.tmp")
    # O_EXCL on the temp name too: never write through a pre-planted symlink.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), _MODE)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(value + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            # link() fails if the target exists: the same "create once" guarantee as O_EXCL, but atomic for content.
            os.link(tmp, path)
        except FileExistsError:
            return read_secret(path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return value


def read_secret(path: str | os.PathLike[str]) -> str:
    """Read an existing secret; raise ``FileNotFoundError`` if absent, ``SecretFileError`` if untrustworthy."""
    path = Path(path)
    st = path.lstat()
    if not path.is_file() or path.is_symlink():
        raise SecretFileError(f"{path}: a secret must be a regular file")
    if st.st_mode & 0o077:
        # JupyterHub refuses a group/world-readable cookie secret too; say how to fix it instead of failing later.
        # ref: https://jupyterhub.readthedocs.io/en/stable/tutorial/getting-started/security-basics.html#cookie-secret
        raise SecretFileError(
            f"{path}: mode {oct(st.st_mode & 0o777)} lets other users read it; run `chmod 600 {path}`"
        )
    value = path.read_text(encoding="ascii").strip()
    if not value:
        raise SecretFileError(f"{path}: empty secret file; delete it to have a new one generated")
    try:
        bytes.fromhex(value)
    except ValueError:
        raise SecretFileError(f"{path}: not a hex secret") from None
    return value


def _fsync_dir(directory: Path) -> None:
    # Makes the new directory entry durable, so a power cut cannot "un-create" a secret that a hub already used.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
