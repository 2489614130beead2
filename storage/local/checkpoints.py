"""Checkpoints in a local directory: atomic, checksummed, newest wins.

Layout: ``<root>/<sha256(patient id)[:32]>/<seq:020d>.ckpt`` (file names reveal no patient id).
File: ``b"NMCK"`` ‖ u32 header length ‖ JSON header (seq, model version, length, SHA-256 of the
data) ‖ data. A write goes to a temporary file, every byte of it (a short write is continued, so
a disk that fills up mid-write refuses it instead of leaving a short file), is fsynced, renamed
into place (atomic on POSIX) and the directory fsynced; a write that fails removes its
temporary file and leaves the stored checkpoints as they were. A torn or altered file fails the
length/SHA-256 check and is never returned as valid. A write with a sequence at or below the
newest stored one is refused, and only the newest ``keep`` checkpoints are kept.

A full disk is :class:`twin.errors.StorageFullError`, any other failure of the file system
:class:`twin.errors.StorageUnavailableError` (both retryable; a checkpoint is derived from the
event log, so its writer may also go on without it).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import struct
import uuid
from pathlib import Path

from storage.disk import os_error, write_all
from storage.local.files import fsync_dir
from twin import errors, ports

__all__ = ["LocalCheckpointStore"]

_MAGIC = b"NMCK"
_SUFFIX = ".ckpt"
_STORE = "checkpoint store"


def _seq_of(path: Path) -> int | None:
    stem = path.name[: -len(_SUFFIX)]
    return int(stem) if path.name.endswith(_SUFFIX) and stem.isdigit() else None


class LocalCheckpointStore:
    """A :class:`twin.ports.CheckpointStore` on the local filesystem.

    Args:
        root: Directory for checkpoints (created with mode 0700).
        keep: Newest checkpoints kept per patient (>= 1).
    """

    def __init__(self, root: Path, *, keep: int = 2) -> None:
        self._root = root
        self._keep = max(1, keep)
        self._locks: dict[str, asyncio.Lock] = {}

    def _dir(self, patient_id: str) -> Path:
        return self._root / hashlib.sha256(patient_id.encode()).hexdigest()[:32]

    def _stored(self, folder: Path) -> list[tuple[int, Path]]:
        if not folder.is_dir():
            return []
        found = [(seq, p) for p in folder.iterdir() if (seq := _seq_of(p)) is not None]
        return sorted(found, reverse=True)

    def _put(self, checkpoint: ports.Checkpoint) -> bool:
        folder = self._dir(checkpoint.patient_id)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        stored = self._stored(folder)
        if stored and stored[0][0] >= checkpoint.seq:
            return False
        header = json.dumps(
            {
                "seq": checkpoint.seq,
                "model_version": checkpoint.model_version,
                "length": len(checkpoint.data),
                "sha256": hashlib.sha256(checkpoint.data).hexdigest(),
            },
            sort_keys=True,
        ).encode()
        tmp = folder / f".{uuid.uuid4().hex}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                write_all(fd, _MAGIC + struct.pack("<I", len(header)) + header + checkpoint.data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, folder / f"{checkpoint.seq:020d}{_SUFFIX}")
        except BaseException:
            # A sealed copy of the twin must not stay behind (it would hold the space a full
            # disk needs, and outlive an erasure, which removes checkpoints only).
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(folder)
        for _, old in self._stored(folder)[self._keep :]:
            old.unlink(missing_ok=True)
        return True

    def _read(self, patient_id: str) -> ports.Checkpoint | None:
        stored = self._stored(self._dir(patient_id))
        if not stored:
            return None
        seq, path = stored[0]
        raw = path.read_bytes()
        try:
            if raw[:4] != _MAGIC:
                raise ValueError("magic")
            (length,) = struct.unpack_from("<I", raw, 4)
            header = json.loads(raw[8 : 8 + length])
            data = raw[8 + length :]
            if header["seq"] != seq or header["length"] != len(data):
                raise ValueError("length")
            if hashlib.sha256(data).hexdigest() != header["sha256"]:
                raise ValueError("checksum")
        except (ValueError, KeyError, struct.error) as exc:
            raise errors.CheckpointCorruptError(
                f"checkpoint at seq {seq} is damaged ({exc}); rebuild from the event log"
            ) from None
        return ports.Checkpoint(patient_id, seq, header["model_version"], data)

    def _lock(self, patient_id: str) -> asyncio.Lock:
        return self._locks.setdefault(patient_id, asyncio.Lock())

    async def put(self, checkpoint: ports.Checkpoint) -> bool:
        """Write unless a checkpoint with an equal or higher sequence exists.

        Raises:
            StorageFullError: The disk has no space for it (the stored ones are untouched).
            StorageUnavailableError: The folder cannot be written now (an I/O error, a
                read-only file system).
            OSError: A failure that does not pass (a file where the folder should be).
        """
        async with self._lock(checkpoint.patient_id):
            try:
                return await asyncio.to_thread(self._put, checkpoint)
            except OSError as exc:
                raise os_error(exc, _STORE) from None

    async def latest(self, patient_id: str) -> ports.Checkpoint | None:
        """The newest checkpoint, verified.

        Raises:
            CheckpointCorruptError: The newest stored file is damaged.
            StorageUnavailableError: The folder cannot be read.
        """
        try:
            try:
                return await asyncio.to_thread(self._read, patient_id)
            except FileNotFoundError:  # pruned or erased since listed (another process): again
                return await asyncio.to_thread(self._read, patient_id)
        except OSError as exc:
            raise os_error(exc, _STORE) from None

    async def delete_all(self, patient_id: str) -> int:
        """Remove every checkpoint of a patient; returns how many.

        Also any temporary file a write killed mid-way left in the patient's folder: it is a
        sealed copy of the twin too, and must not outlive an erasure.
        """

        def remove() -> int:
            folder = self._dir(patient_id)
            stored = self._stored(folder)
            if folder.is_dir():
                for path in folder.iterdir():
                    if path.is_file():
                        path.unlink(missing_ok=True)
            return len(stored)

        async with self._lock(patient_id):
            try:
                return await asyncio.to_thread(remove)
            except OSError as exc:
                raise os_error(exc, _STORE) from None
