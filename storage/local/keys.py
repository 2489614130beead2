"""A local key-encryption key (KEK) file: the embedded stand-in for AWS KMS.

Each KEK is 32 random bytes in ``<dir>/kek-<n>.key`` (mode 0600, created exclusively and whole
on first run: never a short file, even on a full disk); the highest ``n`` is current.
:meth:`LocalKeyProvider.rotate` adds a new KEK; old ones stay so keys wrapped under them still
unwrap until re-wrapped. Data keys are wrapped with AES-256-GCM under the KEK, the context
(patient id) as associated data.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from storage.disk import os_error
from storage.local.files import create_once
from twin import errors, ports

__all__ = ["LocalKeyProvider"]

_NAME = re.compile(r"^kek-(\d+)\.key$")
_STORE = "key store"


class LocalKeyProvider:
    """A :class:`twin.ports.KeyProvider` backed by key files in one directory."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._keks: dict[str, bytes] = {}
        self._lock = asyncio.Lock()

    def _load(self) -> None:
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for path in sorted(self._dir.iterdir()):
            if _NAME.match(path.name) and path.name not in self._keks:
                data = path.read_bytes()
                if len(data) != 32:
                    raise errors.KeyAccessError(f"key file {path.name} is damaged")
                self._keks[path.name] = data
        if not self._keks:
            self._create(1)

    def _create(self, number: int) -> None:
        name = f"kek-{number}.key"
        key = AESGCM.generate_key(bit_length=256)
        # Whole or not at all: a key file cut short by a full disk would be "damaged" at every
        # later start. Another process that created it first keeps its key.
        if not create_once(self._dir / name, key):
            key = (self._dir / name).read_bytes()
            if len(key) != 32:
                raise errors.KeyAccessError(f"key file {name} is damaged")
        self._keks[name] = key

    def _current(self) -> str:
        return max(self._keks, key=lambda n: int(_NAME.match(n).group(1)))  # type: ignore[union-attr]

    async def _ready(self) -> None:
        if not self._keks:
            async with self._lock:
                if not self._keks:
                    try:
                        await asyncio.to_thread(self._load)
                    except OSError as exc:
                        raise os_error(exc, _STORE) from None

    async def current_kek_id(self) -> str:
        """Name of the newest key file."""
        await self._ready()
        return self._current()

    async def wrap(self, data_key: bytes, *, context: str) -> ports.WrappedKey:
        """AES-GCM-encrypt ``data_key`` under the current KEK, bound to ``context``."""
        await self._ready()
        kek_id = self._current()
        nonce = os.urandom(12)
        blob = nonce + AESGCM(self._keks[kek_id]).encrypt(nonce, data_key, context.encode())
        return ports.WrappedKey(kek_id, blob)

    async def unwrap(self, wrapped: ports.WrappedKey, *, context: str) -> bytes:
        """Decrypt a wrapped data key; refuses another context or a damaged blob."""
        await self._ready()
        kek = self._keks.get(wrapped.kek_id)
        if kek is None:
            raise errors.KeyAccessError(f"unknown key-encryption key {wrapped.kek_id!r}")
        try:
            return AESGCM(kek).decrypt(wrapped.blob[:12], wrapped.blob[12:], context.encode())
        except InvalidTag:
            raise errors.KeyAccessError("data key does not unwrap for this context") from None

    async def rotate(self) -> str:
        """Create a new current KEK; returns its id."""
        await self._ready()
        async with self._lock:
            number = int(_NAME.match(self._current()).group(1)) + 1  # type: ignore[union-attr]
            try:
                await asyncio.to_thread(self._create, number)
            except OSError as exc:
                raise os_error(exc, _STORE) from None
        return self._current()
