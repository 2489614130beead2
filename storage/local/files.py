"""Durable file-system steps shared by the local adapters."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from storage.disk import write_all

__all__ = ["create_once", "fsync_dir"]


def fsync_dir(path: Path) -> None:
    """Sync a folder, so that the entries just created or renamed in it survive a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_once(path: Path, data: bytes) -> bool:
    """Create ``path`` holding ``data`` (mode 0600), whole or not at all, unless it exists.

    The bytes go to a temporary file in the same folder, are synced, and the file is then
    linked under its name: a disk that fills up mid-write leaves no short file under that name
    (which would be read as the real one, damaged, by every later start). A link rather than a
    rename, because a rename would replace a file another process created meanwhile; the first
    creator's file stays.

    Args:
        path: The file to create.
        data: Its whole content.

    Returns:
        True when this call created it; False when it existed already (left untouched).

    Raises:
        OSError: The folder cannot be written (ENOSPC when the disk is full); nothing of this
            call stays behind.
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return True
