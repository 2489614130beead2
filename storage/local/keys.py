"""Local key-encryption keys (KEKs) in one folder: the embedded stand-in for AWS KMS.

Each KEK is 32 random bytes in ``<dir>/kek-<n>.key`` (mode 0600, created exclusively and whole
on first run: never a short file, even on a full disk); the highest ``n`` on disk is current.
Data keys are wrapped with AES-256-GCM under a KEK, the context (patient id) as associated data.

Several processes share the folder (the API's twin hosts, ``novamind keys rotate``), so what a
process holds in memory follows the folder:

- :meth:`LocalKeyProvider.wrap` lists the folder before every wrap and wraps under the newest
  KEK there: a KEK added by another process is used at once, and one retired (its file moved
  away or deleted) is never used again. A listing costs about 6 µs (77 µs through a worker
  thread), and a wrap happens once per new patient (and per backup), next to a database write
  of milliseconds, so it is listed every time rather than on a timer that would leave seconds
  in which a process wraps under an old KEK.
- :meth:`LocalKeyProvider.unwrap` of a key under a KEK this process has not loaded lists the
  folder again (a rotation elsewhere re-wrapped it under a new KEK). A KEK id found missing is
  not looked for again for a second, so a key under a retired KEK cannot make every read list
  the folder; a genuine new KEK is on disk before any key is wrapped under it, so the first
  look finds it.

:meth:`LocalKeyProvider.rotate` adds a new KEK; old ones stay, so keys wrapped under them still
unwrap until re-wrapped. :meth:`LocalKeyProvider.retire` takes an old KEK out of the folder:
into ``retired/`` (no process loads it any more; it can still be moved back to restore a backup
written before the rotation) or destroyed.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from storage.disk import os_error
from storage.local.files import create_once, fsync_dir
from twin import errors, ports

__all__ = ["RETIRED", "LocalKeyProvider"]

_NAME = re.compile(r"^kek-([1-9]\d{0,8})\.key$")
_STORE = "key store"
#: Sub-folder of retired KEKs (never loaded).
RETIRED = "retired"
#: Seconds during which a KEK id found missing is not looked for again.
_MISSING_S = 1.0


def _number(name: str) -> int:
    match = _NAME.match(name)
    assert match is not None  # every name held passed _NAME
    return int(match.group(1))


class LocalKeyProvider:
    """A :class:`twin.ports.KeyProvider` backed by key files in one directory.

    Args:
        directory: The key folder (created 0700 on first use, with ``kek-1.key``).
    """

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._keks: dict[str, bytes] = {}
        self._lock = asyncio.Lock()
        # KEK id -> monotonic time a listing last found it missing.
        self._missing: dict[str, float] = {}

    @property
    def directory(self) -> Path:
        """The key folder."""
        return self._dir

    def _read(self, name: str) -> bytes:
        data = (self._dir / name).read_bytes()
        if len(data) != 32:
            raise errors.KeyAccessError(f"key file {name} is damaged")
        return data

    def _load(self) -> None:
        """First use: create the folder (and ``kek-1.key`` when it has none), then list it."""
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not any(_NAME.match(name) for name in os.listdir(self._dir)):
            self._create(1)
        self._refresh()

    def _refresh(self) -> None:
        """Hold exactly the KEKs whose files are in the folder now (new ones read, gone dropped).

        Raises:
            KeyAccessError: The folder holds no KEK any more, or a key file is damaged.
            OSError: The folder cannot be read.
        """
        names = {name for name in os.listdir(self._dir) if _NAME.match(name)}
        if not names:
            # Never create a fresh kek-1 here: every stored key would then fail to unwrap.
            raise errors.KeyAccessError("the key folder holds no key-encryption key")
        for name in names - self._keks.keys():
            self._keks[name] = self._read(name)
        for name in self._keks.keys() - names:
            del self._keks[name]

    def _create(self, number: int) -> None:
        name = f"kek-{number}.key"
        key = AESGCM.generate_key(bit_length=256)
        # Whole or not at all: a key file cut short by a full disk would be "damaged" at every
        # later start. Another process that created it first keeps its key.
        if not create_once(self._dir / name, key):
            key = self._read(name)
        self._keks[name] = key

    def _current(self) -> str:
        return max(self._keks, key=_number)

    async def _sync(self) -> None:
        """Load on first use, else list the folder again (both in a worker thread)."""
        async with self._lock:
            try:
                await asyncio.to_thread(self._refresh if self._keks else self._load)
            except OSError as exc:
                raise os_error(exc, _STORE) from None

    async def current_kek_id(self) -> str:
        """Name of the newest key file in the folder now."""
        await self._sync()
        return self._current()

    async def wrap(self, data_key: bytes, *, context: str) -> ports.WrappedKey:
        """AES-GCM-encrypt ``data_key`` under the newest KEK on disk, bound to ``context``."""
        await self._sync()
        kek_id = self._current()
        nonce = os.urandom(12)
        blob = nonce + AESGCM(self._keks[kek_id]).encrypt(nonce, data_key, context.encode())
        return ports.WrappedKey(kek_id, blob)

    async def _kek(self, kek_id: str) -> bytes | None:
        kek = self._keks.get(kek_id)
        if kek is not None or not _NAME.match(kek_id):
            return kek
        missing_at = self._missing.get(kek_id)
        if self._keks and missing_at is not None and time.monotonic() - missing_at < _MISSING_S:
            return None
        await self._sync()
        kek = self._keks.get(kek_id)
        if kek is None:
            self._missing[kek_id] = time.monotonic()
        else:
            self._missing.pop(kek_id, None)
        return kek

    async def unwrap(self, wrapped: ports.WrappedKey, *, context: str) -> bytes:
        """Decrypt a wrapped data key; refuses another context, a damaged blob or a gone KEK."""
        kek = await self._kek(wrapped.kek_id)
        if kek is None:
            raise errors.KeyAccessError(f"unknown key-encryption key {wrapped.kek_id!r}")
        try:
            return AESGCM(kek).decrypt(wrapped.blob[:12], wrapped.blob[12:], context.encode())
        except InvalidTag:
            raise errors.KeyAccessError("data key does not unwrap for this context") from None

    async def rotate(self) -> str:
        """Create a new current KEK (one above the newest on disk); returns its id."""
        await self._sync()
        async with self._lock:
            try:
                await asyncio.to_thread(self._create, _number(self._current()) + 1)
            except OSError as exc:
                raise os_error(exc, _STORE) from None
        return self._current()

    async def retire(self, kek_id: str, *, destroy: bool = False) -> None:
        """Take an old KEK out of the folder, so that no process wraps or unwraps under it.

        Checking that no data key is still wrapped under it is the caller's part (the data-key
        store is not this provider's). Every step is made durable (the folders synced).

        Args:
            kek_id: A KEK file name, e.g. ``kek-1.key``; never the current one.
            destroy: Delete the file (from the folder or from ``retired/``) instead of moving it
                to ``retired/``.

        Raises:
            KeyAccessError: ``kek_id`` names no KEK here, or the current one.
        """
        if not _NAME.match(kek_id):
            raise errors.KeyAccessError(f"not a key-encryption key name: {kek_id!r}")
        await self._sync()
        async with self._lock:
            try:
                await asyncio.to_thread(self._retire, kek_id, destroy)
            except OSError as exc:
                raise os_error(exc, _STORE) from None

    def _retire(self, kek_id: str, destroy: bool) -> None:
        self._refresh()
        retired = self._dir / RETIRED
        live, kept = self._dir / kek_id, retired / kek_id
        if kek_id == self._current():
            raise errors.KeyAccessError(
                f"{kek_id} is the current key-encryption key: rotate to a new one first"
            )
        if live.exists():
            retired.mkdir(mode=0o700, exist_ok=True)
            # Renamed first even when destroyed: the folder never shows a half-deleted KEK.
            os.replace(live, kept)
            fsync_dir(retired)
            fsync_dir(self._dir)
            self._keks.pop(kek_id, None)
        elif not kept.exists():
            raise errors.KeyAccessError(f"no key-encryption key {kek_id!r} here")
        if destroy:
            kept.unlink()
            fsync_dir(retired)

    async def reinstate(self, kek_id: str) -> None:
        """Move a KEK from ``retired/`` back into the folder (undoes :meth:`retire`).

        Raises:
            KeyAccessError: ``kek_id`` is not a KEK name.
        """
        if not _NAME.match(kek_id):
            raise errors.KeyAccessError(f"not a key-encryption key name: {kek_id!r}")

        def move() -> None:
            os.replace(self._dir / RETIRED / kek_id, self._dir / kek_id)
            fsync_dir(self._dir)
            fsync_dir(self._dir / RETIRED)
            self._refresh()

        async with self._lock:
            try:
                await asyncio.to_thread(move)
            except OSError as exc:
                raise os_error(exc, _STORE) from None
