"""The erasure ledger in a local folder: one empty file per erased patient.

A second empty file, ``<patient id>.done``, marks an erasure that every place completed; an
erasure without it is redone by the next ledger apply.

It lives in the key folder, next to the key-encryption keys, so that it goes wherever the
embedded KEK is escrowed and never into a backup (docs/operations.md). A file per patient is
created exclusively and synced with its folder, so a recorded erasure survives a crash.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from storage.disk import os_error
from storage.local.files import fsync_dir
from twin import errors
from twin.domain.patients import is_patient_id

__all__ = ["LocalErasureLedger"]

_DONE = ".done"


class LocalErasureLedger:
    """A :class:`twin.ports.ErasureLedger` in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory

    def _record(self, patient_id: str, suffix: str = "") -> None:
        if not is_patient_id(patient_id):
            raise errors.InvalidInputError("patient_id: 1-64 letters, digits, '_' or '-'")
        if not self._dir.is_dir():
            self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fsync_dir(self._dir.parent)  # the new folder's entry survives a crash too
        path = self._dir / f"{patient_id}{suffix}"
        # Synced even when it exists: an earlier attempt may have crashed before its sync, and
        # the caller destroys the data key once this returns.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self._dir)

    def _erased(self) -> list[str]:
        if not self._dir.is_dir():
            return []
        return sorted(p.name for p in self._dir.iterdir() if is_patient_id(p.name))

    async def _write(self, patient_id: str, suffix: str = "") -> None:
        try:
            await asyncio.to_thread(self._record, patient_id, suffix)
        except OSError as exc:
            raise os_error(exc, "erasure ledger") from None

    async def record(self, patient_id: str) -> None:
        """Note the patient as erased (idempotent; synced before it returns).

        Raises:
            StorageUnavailableError: The folder cannot be written (``StorageFullError`` when
                the disk is full); the erasure does not start.
        """
        await self._write(patient_id)

    async def erased(self) -> list[str]:
        """Every erased patient id, sorted."""
        return await asyncio.to_thread(self._erased)

    async def complete(self, patient_id: str) -> None:
        """Mark the patient's erasure complete (idempotent; synced before it returns)."""
        await self._write(patient_id, _DONE)

    def _incomplete(self) -> list[str]:
        if not self._dir.is_dir():
            return []
        names = {p.name for p in self._dir.iterdir()}
        return sorted(n for n in names if is_patient_id(n) and n + _DONE not in names)

    async def incomplete(self) -> list[str]:
        """Patients whose erasure was never marked complete, sorted."""
        return await asyncio.to_thread(self._incomplete)
