"""Local development secrets (JWT signing secret, research key), created on first use.

Only for ``environment = local``: production secrets come from the environment or a secret
manager, and settings refuse to start without them. The file is created with ``O_EXCL`` and
mode 0600, so concurrent first runs agree on one value.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from twin import errors

__all__ = ["local_secret"]


def local_secret(directory: Path, name: str) -> str:
    """The secret ``name`` in ``directory``, generated (384 random bits) if absent."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / f"{name}.secret"
    value = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        stored = path.read_text().strip()
        if len(stored) < 32:
            raise errors.ConfigurationError(f"local secret {name} is damaged") from None
        return stored
    try:
        os.write(fd, value.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return value
