"""Audit-chain anchors in a local append-only file: one JSON line per anchor, hash-linked.

Each line is ``{"at", "entries", "head_hash", "prev"}`` where ``prev`` is the SHA-256 of the
line before it (its bytes without the newline; :data:`~twin.domain.audit.GENESIS` for the
first), so an earlier line that was edited or removed breaks the next line's link and reading
fails with :class:`~twin.errors.AuditAnchorCorruptError`.

The file is opened with ``O_APPEND`` and ``O_NOFOLLOW`` (a symbolic link planted in its place
is refused), created 0600 (its new folder entry synced) and made 0600 again if it was not;
each line is written whole under an exclusive ``flock`` held from reading the last line to the
fsync of the new one, so writers in several processes neither interleave partial lines nor
link two lines to the same predecessor. Only the last line may be unterminated: that is a write
cut by a crash (never acknowledged) or a file cut short, and readers report it as a note
(never silently) while the next writer cuts it, under the lock. Any other line that is not an
anchor, or does not link to the line before it, is reported unreadable by its line number.
Readers stream the file line by line (a line over 1 KiB is damaged), never holding it whole.

What it cannot do: a local file is not write-once storage. Whoever can write the file can cut
its newest lines, or rewrite it whole with links recomputed; it guards against edits of the
database that leave this file alone (another disk, or another owner), not against someone
who holds both. Production keeps anchors in S3 under Object Lock
(:class:`storage.s3.S3AuditAnchorStore`).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

from storage.disk import os_error, write_all
from storage.local.files import fsync_dir
from twin import errors
from twin.domain.audit import GENESIS, REPORT_LIST_MAX, AnchorScan, AuditAnchor, anchor_key

__all__ = ["LocalAuditAnchorStore"]

#: Bytes read back from the end of the file to find its last line (a line is about 200).
_TAIL = 8192
#: Longest line read as an anchor, bytes (one is about 170).
_LINE_MAX = 1024


def _digest(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


class LocalAuditAnchorStore:
    """A :class:`twin.ports.AuditAnchorStore` in the file ``path`` (see module docstring)."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def _open_for_append(self) -> int:
        folder = self._path.parent
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            fsync_dir(folder.parent)
        flags = os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW
        try:
            fd = os.open(self._path, flags | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            fd = os.open(self._path, flags)
        else:
            fsync_dir(folder)  # the new file's entry survives a crash
            return fd
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise OSError(f"{self._path.name} is not a regular file")
            if stat.S_IMODE(mode) != 0o600:
                os.fchmod(fd, 0o600)  # whoever else could read it could also rewrite it
        except BaseException:
            os.close(fd)
            raise
        return fd

    @staticmethod
    def _newline_before(fd: int, end: int) -> int:
        """Offset of the last newline before ``end``, or -1 (read backwards in chunks)."""
        while end > 0:
            start = max(0, end - _TAIL)
            cut = os.pread(fd, end - start, start).rfind(b"\n")
            if cut >= 0:
                return start + cut
            end = start
        return -1

    def _last_line(self, fd: int) -> bytes | None:
        """The last complete line (without its newline); cuts an unterminated one first."""
        size = os.fstat(fd).st_size
        if size == 0:
            return None
        last = self._newline_before(fd, size)
        if last != size - 1:
            # A crash mid-write left a partial line that no caller was told was written.
            os.ftruncate(fd, last + 1)
            os.fsync(fd)
            if last < 0:
                return None
        before = self._newline_before(fd, last)
        return os.pread(fd, last - before - 1, before + 1)

    def _put(self, anchor: AuditAnchor) -> None:
        fd = self._open_for_append()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released when the descriptor closes
            last = self._last_line(fd)
            record = {
                "at": anchor.at,
                "entries": anchor.entries,
                "head_hash": anchor.head_hash,
                "prev": GENESIS if last is None else _digest(last),
            }
            line = json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"
            write_all(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _scan(self, min_entries: int) -> AnchorScan:
        try:
            fd = os.open(self._path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return AnchorScan()
        anchors: list[AuditAnchor] = []
        unreadable: list[str] = []
        count = 0
        notes: list[str] = []
        # The file keeps no time of its own per line (and its writer could set any): the
        # latest each line can have been recorded is now, as it is read.
        read_at = datetime.now(UTC)

        def bad(what: str) -> None:
            nonlocal count
            count += 1
            if len(unreadable) < REPORT_LIST_MAX:
                unreadable.append(what)

        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            with os.fdopen(os.dup(fd), "rb") as stream:
                prev: str | None = GENESIS
                number = 0
                while line := stream.readline(_LINE_MAX + 1):
                    number += 1
                    if not line.endswith(b"\n"):
                        if len(line) <= _LINE_MAX:  # shorter than the limit: the file's end
                            notes.append(
                                f"the audit anchor file's last line ({len(line)} bytes) is "
                                "incomplete: a write cut by a crash (never acknowledged), or "
                                "the file was cut short"
                            )
                            break
                        while (rest := stream.readline(_LINE_MAX)) and not rest.endswith(b"\n"):
                            pass  # the rest of an overlong line
                        bad(f"audit anchor file line {number} is damaged (over {_LINE_MAX} bytes)")
                        prev = None  # unknown: the next line's link cannot be checked
                        continue
                    body = line[:-1]
                    try:
                        record = json.loads(body)
                        anchor = AuditAnchor(
                            record["entries"], record["head_hash"], record["at"], read_at
                        )
                        link = record["prev"]
                    except (ValueError, TypeError, KeyError, errors.InvalidInputError):
                        bad(f"audit anchor file line {number} is damaged")
                    else:
                        if prev is not None and link != prev:
                            bad(
                                f"audit anchor file line {number} does not follow the line "
                                "before it: an earlier anchor was edited or removed"
                            )
                        if anchor.entries >= min_entries:
                            anchors.append(anchor)
                    prev = _digest(body)
        finally:
            os.close(fd)
        return AnchorScan(
            tuple(sorted(anchors, key=anchor_key)), tuple(unreadable), count, tuple(notes)
        )

    async def put(self, anchor: AuditAnchor) -> None:
        """Append the anchor (synced before it returns).

        Raises:
            StorageUnavailableError: The file cannot be written (``StorageFullError`` when the
                disk is full); nothing of this anchor was acknowledged.
        """
        try:
            await asyncio.to_thread(self._put, anchor)
        except OSError as exc:
            raise os_error(exc, "audit anchor file") from None

    async def scan(self, *, min_entries: int = 0) -> AnchorScan:
        """The anchors of at least ``min_entries`` entries; damaged lines named by number.

        Raises:
            StorageUnavailableError: The file cannot be read.
        """
        try:
            return await asyncio.to_thread(self._scan, min_entries)
        except OSError as exc:
            raise os_error(exc, "audit anchor file") from None

    async def all(self) -> list[AuditAnchor]:
        """Every anchor, sorted by ``entries`` then ``at``.

        Raises:
            AuditAnchorCorruptError: A line is damaged, or an earlier line was edited or
                removed.
        """
        scan = await self.scan()
        if scan.unreadable_count:
            raise errors.AuditAnchorCorruptError("; ".join(scan.unreadable))
        return list(scan.anchors)
