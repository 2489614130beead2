"""Local development secrets (JWT signing secret, research key), created on first use.

Only for ``environment = local``: production secrets come from the environment or a secret
manager, and settings refuse to start without them. The file is created whole or not at all
(:func:`storage.local.files.create_once`: never a short file, even on a full disk) with mode
0600, and concurrent first runs agree on one value: the first one created.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from storage.disk import os_error
from storage.local.files import create_once
from twin import errors

__all__ = ["local_secret", "read_local_secret"]


def local_secret(directory: Path, name: str) -> str:
    """The secret ``name`` in ``directory``, generated (384 random bits) if absent.

    Raises:
        ConfigurationError: The stored secret is damaged.
        StorageUnavailableError: The folder cannot be written (``StorageFullError`` when the
            disk is full; nothing is left behind, and the next start tries again).
    """
    path = directory / f"{name}.secret"
    value = secrets.token_urlsafe(48)
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if create_once(path, value.encode()):
            return value
        stored = path.read_text().strip()
    except OSError as exc:
        raise os_error(exc, "local secret store") from None
    if len(stored) < 32:
        raise errors.ConfigurationError(f"local secret {name} is damaged")
    return stored


def read_local_secret(directory: Path, name: str) -> str | None:
    """The secret ``name`` in ``directory``, or ``None`` when there is none (never created).

    Raises:
        ConfigurationError: The stored secret is damaged.
        StorageUnavailableError: The file cannot be read.
    """
    try:
        stored = (directory / f"{name}.secret").read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise os_error(exc, "local secret store") from None
    if len(stored) < 32:
        raise errors.ConfigurationError(f"local secret {name} is damaged")
    return stored
