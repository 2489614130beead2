"""Local key-encryption keys (KEKs) in one folder: the embedded stand-in for AWS KMS.

Each KEK is 32 random bytes in ``<dir>/kek-<n>.key`` (mode 0600, created exclusively and whole:
never a short file, even on a full disk); the highest ``n`` in the folder is current. Data keys
are wrapped with AES-256-GCM under a KEK, the context (patient id) as associated data.

Key material is created in two places only: a service's first use of an empty folder
(``kek-1.key``, with ``create=True``, the default) and :meth:`LocalKeyProvider.new_kek`
(``novamind keys new-kek``). A provider opened with ``create=False`` (the other ``novamind
keys`` commands) never creates one: a missing or empty folder (a wrong data directory, a key
volume not mounted, a host the escrow copy has not reached) is an error there, never a fresh
KEK that no stored data key is wrapped under.

Several processes share the folder (the API's twin hosts, ``novamind keys``), so what a process
holds follows the folder: a wrap or unwrap lists it again when the last listing is older than
:data:`LISTING_FRESH_S` (1 s), and an unwrap under a KEK not held lists it at once. So a KEK
another process added is unwrapped under at once and wrapped under within a second, and one
retired (moved to ``retired/``) or destroyed is neither wrapped nor unwrapped under a second
later. Within that second, concurrent unwraps share the KEKs held without a listing or a
worker thread each (a listing through a worker thread costs about 77 µs; thousands at once
would queue behind one lock). Data keys a process already unwrapped stay in its sealer's cache
until it restarts: retiring a KEK changes no data key.

A listing that fails (EMFILE, EACCES, an I/O error) while KEKs are held leaves them held (the
failure logged once per errno name) rather than failing the unwrap of a key they open; with
nothing held it is :class:`~twin.errors.KeyUnavailableError` (a folder the process may not
read) or :class:`~twin.errors.StorageUnavailableError`, never a bare ``OSError``. A key file
that cannot be read now (a transient errno) is tried again at the next listing, never called
damaged: only a file read whole with the wrong length is.

A KEK missing from the folder, or whose file is damaged, makes the keys under it
:class:`~twin.errors.KeyUnavailableError` (503: retry once the folder is fixed), never
:class:`~twin.errors.KeyAccessError` (the patient erased). A damaged file other than the newest
is skipped (logged by name), so keys under the other KEKs still unwrap; a damaged newest file
refuses every wrap (wrapping under an older KEK instead would put new keys under one about to
be retired).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from storage.disk import os_error
from storage.local.files import create_once, fsync_dir
from twin import errors, ports
from twin.domain.patients import DATA_KEY_DAMAGED

__all__ = ["LISTING_FRESH_S", "RETIRED", "KekFolder", "LocalKeyProvider"]

# fullmatch only: with ``$`` and ``match``, "kek-9.key\n" would pass.
_NAME = re.compile(r"kek-([1-9]\d{0,8})\.key")
_STORE = "key store"
#: Sub-folder of retired KEKs (never loaded).
RETIRED = "retired"
#: Nonce and tag of an AES-GCM wrapped key: a shorter blob is damaged.
_MIN_BLOB = 12 + 16
_LOG = logging.getLogger("novamind.keys")
#: Seconds a listing of the key folder serves wraps and unwraps before the next one.
LISTING_FRESH_S = 1.0
T = TypeVar("T")


def _number(name: str) -> int:
    match = _NAME.fullmatch(name)
    assert match is not None  # every name held passed _NAME
    return int(match.group(1))


def _shown(kek_id: str) -> str:
    """A KEK id as messages show it (it comes from a database row: bounded, quoted)."""
    return repr(kek_id[:64])


@dataclass(frozen=True, slots=True)
class KekFolder:
    """What the key folder holds (``novamind keys status``).

    Attributes:
        current: The newest KEK (new keys are wrapped under it).
        live: The KEKs in the folder, oldest first.
        damaged: Those whose file is damaged or unreadable (skipped).
        retired: The KEKs in ``retired/`` (never loaded), oldest first.
    """

    current: str
    live: tuple[str, ...]
    damaged: tuple[str, ...]
    retired: tuple[str, ...]


class LocalKeyProvider:
    """A :class:`twin.ports.KeyProvider` backed by key files in one directory.

    Args:
        directory: The key folder.
        create: On first use of a folder that holds no KEK, create it (0700) with
            ``kek-1.key``: what a service's first start does. ``False`` (maintenance commands)
            refuses such a folder instead.
        clock: Monotonic seconds (the age of the last listing).
    """

    def __init__(
        self,
        directory: Path,
        *,
        create: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dir = directory
        self._create_first = create
        self._first = True
        self._keks: dict[str, bytes] = {}
        self._damaged: set[str] = set()
        self._unreadable: dict[str, str] = {}
        self._newest = ""
        self._lock = asyncio.Lock()
        self._clock = clock
        self._listed_at: float | None = None
        self._listing_failures: set[str] = set()

    @property
    def directory(self) -> Path:
        """The key folder."""
        return self._dir

    def _names(self, folder: Path) -> set[str]:
        return {name for name in os.listdir(folder) if _NAME.fullmatch(name)}

    def _refresh(self) -> None:
        """Hold exactly the KEKs whose files are in the folder now (new ones read, gone dropped).

        Raises:
            KeyUnavailableError: The folder is missing or holds no KEK.
            OSError: The folder cannot be read.
        """
        if self._first and self._create_first:
            self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self._names(self._dir):
                self._create(1)
        self._first = False
        try:
            names = self._names(self._dir)
        except FileNotFoundError:
            names = set()
        except OSError as exc:
            why = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
            if self._keks:
                # Keep what is held: a key it opens is not made unavailable by a listing.
                if why not in self._listing_failures:
                    self._listing_failures.add(why)
                    _LOG.error("the key folder cannot be listed (%s); the KEKs held are used", why)
                return
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise errors.KeyUnavailableError(
                    f"the key folder cannot be read ({why}): check its owner and mode"
                ) from None
            raise errors.StorageUnavailableError(f"{_STORE} unavailable ({why})") from None
        if not names:
            # Never a fresh kek-1 here: no stored key is wrapped under it.
            raise errors.KeyUnavailableError(
                "the key folder is missing or holds no key-encryption key (a wrong data "
                "directory, or the key volume not mounted?)"
            )
        unreadable: dict[str, str] = {}
        for name in names - self._keks.keys():
            try:
                data = (self._dir / name).read_bytes()
            except FileNotFoundError:  # moved away since the listing
                names.discard(name)
                continue
            except OSError as exc:
                # Not known to be damaged (EMFILE, EIO, EACCES...): read again next listing.
                unreadable[name] = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
                continue
            if len(data) != 32:  # read whole: the wrong length is a damaged file
                if name not in self._damaged:
                    _LOG.error("key file %s is damaged; skipped", name)
                self._damaged.add(name)
                continue
            self._damaged.discard(name)
            self._keks[name] = data
        for name in self._keks.keys() - names:
            del self._keks[name]
        self._damaged &= names
        self._unreadable = unreadable
        self._newest = max(names, key=_number)
        self._listed_at = self._clock()
        self._listing_failures.clear()

    def _create(self, number: int) -> str:
        name = f"kek-{number}.key"
        # Whole or not at all: a key file cut short by a full disk would be "damaged" at every
        # later start. Another process that created it first keeps its key.
        create_once(self._dir / name, AESGCM.generate_key(bit_length=256))
        return name

    async def _locked(self, step: Callable[[], T]) -> T:
        """Run ``step`` in a worker thread, one step of this provider at a time."""
        async with self._lock:
            try:
                return await asyncio.to_thread(step)
            except OSError as exc:
                raise _os_error(exc) from None

    def _fresh(self) -> bool:
        listed = self._listed_at
        return listed is not None and bool(self._keks) and self._clock() - listed < LISTING_FRESH_S

    async def _follow(self, *, needed: str | None = None, force: bool = False) -> None:
        """Hold what the folder holds, listing it unless the last listing is fresh.

        Args:
            needed: A KEK an unwrap needs: when it is not held, the folder is listed now.
            force: List it now whatever its age (a wrap: always under the newest KEK).
        """

        def held() -> bool:
            return not force and self._fresh() and (needed is None or needed in self._keks)

        if held():
            return  # no lock, no thread: concurrent unwraps share the last listing
        listed = self._listed_at
        async with self._lock:
            if held() or (force and self._listed_at != listed):
                return  # listed by another caller while this one waited
            try:
                await asyncio.to_thread(self._refresh)
            except OSError as exc:
                raise _os_error(exc) from None

    async def current_kek_id(self) -> str:
        """Name of the newest key file in the folder now (even when damaged: see wrap)."""
        await self._locked(self._refresh)
        return self._newest

    async def wrap(self, data_key: bytes, *, context: str) -> ports.WrappedKey:
        """AES-GCM-encrypt ``data_key`` under the newest KEK in the folder, bound to ``context``.

        Raises:
            KeyUnavailableError: The newest KEK's file is damaged, or the folder holds none.
        """
        # Listed every time: a wrap happens once per new patient, and `keys rotate` compares
        # what it wraps under with the newest KEK it has just been told of.
        await self._follow(force=True)
        kek_id = self._newest
        kek = self._keks.get(kek_id)
        if kek is None and kek_id in self._unreadable:
            raise errors.KeyUnavailableError(
                f"key file {kek_id} cannot be read now ({self._unreadable[kek_id]}); retry"
            )
        if kek is None:
            raise errors.KeyUnavailableError(
                f"key file {kek_id} is damaged: no key is wrapped until it is restored from the "
                "escrow copy"
            )
        nonce = os.urandom(12)
        blob = nonce + AESGCM(kek).encrypt(nonce, data_key, context.encode())
        return ports.WrappedKey(kek_id, blob)

    async def unwrap(self, wrapped: ports.WrappedKey, *, context: str) -> bytes:
        """Decrypt a wrapped data key under the KEK it names, as the folder holds it now.

        Raises:
            DataKeyDamagedError: The blob is damaged or was wrapped for another context.
            KeyUnavailableError: Its KEK is not in the folder (retired, lost) or damaged.
        """
        if len(wrapped.blob) < _MIN_BLOB:
            raise errors.DataKeyDamagedError(DATA_KEY_DAMAGED)
        await self._follow(needed=wrapped.kek_id)
        kek = self._keks.get(wrapped.kek_id)
        if kek is None:
            why = await self._missing(wrapped.kek_id)
            raise errors.KeyUnavailableError(
                f"key-encryption key {_shown(wrapped.kek_id)} is {why}"
            )
        try:
            return AESGCM(kek).decrypt(wrapped.blob[:12], wrapped.blob[12:], context.encode())
        except InvalidTag:
            raise errors.DataKeyDamagedError(DATA_KEY_DAMAGED) from None

    async def _missing(self, kek_id: str) -> str:
        """Why a KEK is not held: damaged, unreadable now, retired, or not in the folder."""
        if kek_id in self._damaged:
            return "damaged"
        if kek_id in self._unreadable:
            return f"unreadable now ({self._unreadable[kek_id]}); retry"
        if _NAME.fullmatch(kek_id):
            retired = self._dir / RETIRED / kek_id
            try:
                kept = await asyncio.to_thread(retired.exists)
            except OSError:
                kept = False
            if kept:
                return (
                    "not in the key folder: it is in retired/ (move it back to use it, "
                    "docs/operations.md §7)"
                )
        return "not in the key folder"

    async def new_kek(self) -> str:
        """Create a new current KEK, one above every KEK in the folder and in ``retired/``.

        The folder is created when missing (a new installation's first KEK is ``kek-1.key``).
        Running services wrap new keys under it from their next wrap.

        Returns:
            Its id, e.g. ``kek-2.key``.
        """

        def create() -> str:
            self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            numbers = [_number(n) for n in self._names(self._dir)]
            if (self._dir / RETIRED).is_dir():
                numbers += [_number(n) for n in self._names(self._dir / RETIRED)]
            name = self._create(max(numbers, default=0) + 1)
            self._first = False
            self._refresh()
            return name

        return await self._locked(create)

    def _check_name(self, kek_id: str) -> None:
        if not _NAME.fullmatch(kek_id):
            raise errors.InvalidInputError(
                f"not a key-encryption key name (kek-<n>.key): {_shown(kek_id)}"
            )

    async def retire(self, kek_id: str) -> None:
        """Move an old KEK to ``retired/``: no process wraps or unwraps under it any more.

        Checking that no data key is still wrapped under it is the caller's part (the data-key
        store is not this provider's). The move is made durable (both folders synced).

        Raises:
            InvalidInputError: ``kek_id`` is not a KEK name, or is the current KEK.
            NotFoundError: The folder holds no such KEK.
        """
        self._check_name(kek_id)

        def move() -> None:
            self._refresh()
            if kek_id == self._newest:
                raise errors.InvalidInputError(
                    f"{kek_id} is the current key-encryption key: create a new one first"
                )
            retired = self._dir / RETIRED
            if not (self._dir / kek_id).exists():
                where = " (it is retired already)" if (retired / kek_id).exists() else ""
                raise errors.NotFoundError(f"no key-encryption key {kek_id} in the folder{where}")
            retired.mkdir(mode=0o700, exist_ok=True)
            os.replace(self._dir / kek_id, retired / kek_id)
            fsync_dir(retired)
            fsync_dir(self._dir)
            self._refresh()

        await self._locked(move)

    async def reinstate(self, kek_id: str) -> None:
        """Move a KEK from ``retired/`` back into the folder (undoes :meth:`retire`).

        Raises:
            InvalidInputError: ``kek_id`` is not a KEK name, or the folder holds a file of that
                name already (neither is touched).
            NotFoundError: ``retired/`` holds no such KEK.
        """
        self._check_name(kek_id)

        def move() -> None:
            kept = self._dir / RETIRED / kek_id
            if not kept.exists():
                raise errors.NotFoundError(f"no retired key-encryption key {kek_id}")
            # A link, not a rename: a file of that name in the folder is never replaced.
            try:
                os.link(kept, self._dir / kek_id)
            except FileExistsError:
                raise errors.InvalidInputError(
                    f"another {kek_id} is in the key folder: compare the two by hand"
                ) from None
            kept.unlink()
            fsync_dir(self._dir)
            fsync_dir(self._dir / RETIRED)
            self._refresh()

        await self._locked(move)

    async def destroy(self, kek_id: str) -> None:
        """Delete a retired KEK's file for good (the caller has checked nothing needs it).

        Raises:
            InvalidInputError: ``kek_id`` is not a KEK name, or is still in the folder (retire
                it first).
            NotFoundError: ``retired/`` holds no such KEK.
        """
        self._check_name(kek_id)

        def delete() -> None:
            if (self._dir / kek_id).exists():
                raise errors.InvalidInputError(
                    f"{kek_id} is in use (in the key folder): retire it first"
                )
            kept = self._dir / RETIRED / kek_id
            if not kept.exists():
                raise errors.NotFoundError(f"no retired key-encryption key {kek_id}")
            kept.unlink()
            fsync_dir(self._dir / RETIRED)

        await self._locked(delete)

    async def folder(self) -> KekFolder:
        """What the folder holds now."""

        def look() -> KekFolder:
            self._refresh()
            retired = self._dir / RETIRED
            kept = self._names(retired) if retired.is_dir() else set()
            skipped = self._damaged | self._unreadable.keys()
            return KekFolder(
                self._newest,
                tuple(sorted(self._keks.keys() | skipped, key=_number)),
                tuple(sorted(skipped, key=_number)),
                tuple(sorted(kept, key=_number)),
            )

        return await self._locked(look)


def _os_error(exc: OSError) -> errors.StorageUnavailableError:
    """A failure of the key folder as the error a caller handles: never a bare ``OSError``."""
    mapped = os_error(exc, _STORE)
    if isinstance(mapped, errors.StorageUnavailableError):
        return mapped
    why = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return errors.KeyUnavailableError(f"the key folder cannot be read ({why})")
    return errors.StorageUnavailableError(f"{_STORE} unavailable ({why})")
