"""Failures of the local disk, as the errors the product answers with.

The embedded stores (the SQLite file, the checkpoint folder, the key folder) write to a local
disk. A disk that fills up, or a file system that fails, must give the caller a retryable
error rather than an unexpected one: :class:`twin.errors.StorageFullError` for "no space
left" (ENOSPC, or a quota's EDQUOT), :class:`twin.errors.StorageUnavailableError` for a
failure that passes (an I/O error, a timeout, a busy or read-only file system). Any other
failure (a file where a folder should be, a permission refused, a name too long) does not pass
by retrying: it stays what it is, an incident. Messages name the store and the failure, never a
path (folder names are derived from patient ids).
"""

from __future__ import annotations

import errno
import os

from twin import errors

__all__ = ["FULL_ERRNOS", "TRANSIENT_ERRNOS", "os_error", "write_all"]

#: ``errno`` values that mean the disk (or the owner's quota) has no space left.
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: ``errno`` values of failures that pass: the device or the network file system failing or
#: busy for now, or remounted read-only after errors until an operator repairs it.
TRANSIENT_ERRNOS = frozenset(
    {errno.EIO, errno.ETIMEDOUT, errno.ESTALE, errno.EAGAIN, errno.EINTR, errno.EBUSY,
     errno.ENOLCK, errno.EROFS, errno.ENOMEM, errno.EMFILE, errno.ENFILE, errno.ENOTCONN,
     errno.ECONNABORTED}
)  # fmt: skip


def os_error(exc: OSError, what: str) -> errors.StorageUnavailableError | OSError:
    """The error an operating-system failure of a local store is raised as.

    Args:
        exc: The failure.
        what: The store, e.g. ``"checkpoint store"``.

    Returns:
        :class:`twin.errors.StorageFullError` for a full disk,
        :class:`twin.errors.StorageUnavailableError` for a failure that passes, else an
        ``OSError`` of the same kind without the file name (not retryable).
    """
    if exc.errno in FULL_ERRNOS:
        return errors.StorageFullError(what)
    if exc.errno in TRANSIENT_ERRNOS:
        return errors.StorageUnavailableError(f"{what} unavailable: {os.strerror(exc.errno)}")
    if exc.errno is None:
        return OSError(f"{what}: {type(exc).__name__}")
    # OSError(errno, text) is the subclass of that errno (FileExistsError...), nameless.
    return OSError(exc.errno, f"{what}: {os.strerror(exc.errno)}")


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd``.

    ``os.write`` may write fewer bytes than asked without raising: that is what a disk that
    fills up mid-write does. The rest is written again, so the disk's refusal arrives as
    ENOSPC instead of as a silently short file.

    Raises:
        OSError: The write failed (ENOSPC when the disk is full).
    """
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:  # never for a regular file; no endless loop if it were
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]
