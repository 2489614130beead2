"""Encrypted backup archives: a folder of authenticated, chunked parts and a sealed manifest.

Layout of an archive folder::

    manifest.json          format, backup id, time, source kind, the wrapped archive key,
                           per part: columns, rows, chunks, SHA-256 of the file; a seal
    <part>.nmb             chunks: 4-byte big-endian length | 12-byte nonce | ciphertext

Encryption: one random AES-256-GCM key per archive, wrapped by the :class:`~twin.ports.KeyProvider`
(KMS ``Encrypt`` with the context ``novamind-backup:<id>`` in production) and stored wrapped in
the manifest; the key material itself never leaves the key service. Each chunk is encrypted
with a fresh random nonce and authenticated with ``AAD = [backup_id, part, index, final]``, so
chunks cannot be reordered, moved between parts or archives, and a truncated part (no final
chunk) is detected. The manifest's seal is the GCM encryption of the SHA-256 of its canonical
JSON, so counts and digests cannot be edited either.

Rows are JSON arrays, one per line; ``bytes`` become ``{"$b": base64}``, ``datetime`` values
``{"$t": ISO 8601}``; everything else is plain JSON (``float`` round-trips exactly).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from twin import errors, ports

__all__ = ["FORMAT", "ArchiveReader", "ArchiveWriter", "PartWriter"]

FORMAT = "novamind-backup/1"
MANIFEST = "manifest.json"
_SUFFIX = ".nmb"
_CHUNK_BYTES = 1 << 20
_LENGTH = struct.Struct(">I")
_NONCE_BYTES = 12


def _encode(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$b": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, datetime):
        return {"$t": value.isoformat()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "$b" in value:
            return base64.b64decode(value["$b"])
        if "$t" in value:
            return datetime.fromisoformat(value["$t"])
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _aad(backup_id: str, part: str, index: int, final: bool) -> bytes:
    return json.dumps([backup_id, part, index, final]).encode()


def _canonical(manifest: dict[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "seal"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _context(backup_id: str) -> str:
    return f"novamind-backup:{backup_id}"


def _check_part_name(name: str) -> str:
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ValueError(f"part name {name!r}: letters, digits, '-' and '_' only")
    return name


def _fsync_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


class PartWriter:
    """Writes one part: rows buffered into ~1 MiB chunks, each encrypted as it fills."""

    def __init__(self, archive: ArchiveWriter, name: str, columns: Sequence[str]) -> None:
        self._archive = archive
        self.name = name
        self.columns = tuple(columns)
        self.rows = 0
        self.chunks = 0
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._digest = hashlib.sha256()
        self._handle = (archive.directory / f"{name}{_SUFFIX}").open("xb")

    def write(self, rows: Sequence[Sequence[Any]]) -> None:
        """Append rows (each a sequence of column values)."""
        for row in rows:
            if len(row) != len(self.columns):
                raise ValueError(f"part {self.name}: row of {len(row)} values, not {self.columns}")
            line = json.dumps([_encode(v) for v in row], separators=(",", ":")).encode() + b"\n"
            self._buffer.append(line)
            self._buffered += len(line)
            self.rows += 1
            if self._buffered >= _CHUNK_BYTES:
                self._flush(final=False)

    def _flush(self, *, final: bool) -> None:
        plaintext = b"".join(self._buffer)
        self._buffer, self._buffered = [], 0
        nonce = os.urandom(_NONCE_BYTES)
        aad = _aad(self._archive.backup_id, self.name, self.chunks, final)
        sealed = nonce + self._archive.cipher.encrypt(nonce, plaintext, aad)
        frame = _LENGTH.pack(len(sealed)) + sealed
        self._handle.write(frame)
        self._digest.update(frame)
        self.chunks += 1

    def close(self) -> dict[str, Any]:
        """Write the final chunk, fsync, and return the part's manifest entry."""
        self._flush(final=True)
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        return {
            "columns": list(self.columns),
            "rows": self.rows,
            "chunks": self.chunks,
            "sha256": self._digest.hexdigest(),
        }


class ArchiveWriter:
    """A new archive in an empty folder. Use :meth:`create`, then parts, then :meth:`finish`."""

    def __init__(
        self, directory: Path, backup_id: str, key: bytes, wrapped: ports.WrappedKey, source: str
    ) -> None:
        self.directory = directory
        self.backup_id = backup_id
        self.cipher = AESGCM(key)
        self._wrapped = wrapped
        self._source = source
        self._parts: dict[str, dict[str, Any]] = {}
        self._open: dict[str, PartWriter] = {}

    @classmethod
    async def create(
        cls, directory: Path, keys: ports.KeyProvider, *, source: str
    ) -> ArchiveWriter:
        """Start an archive in ``directory`` (created; must be absent or empty).

        Raises:
            ConfigurationError: The folder exists and is not empty.
        """
        if directory.exists() and any(directory.iterdir()):
            raise errors.ConfigurationError(f"backup folder {directory} is not empty")
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        backup_id = str(uuid.uuid4())
        key = AESGCM.generate_key(bit_length=256)
        wrapped = await keys.wrap(key, context=_context(backup_id))
        return cls(directory, backup_id, key, wrapped, source)

    def part(self, name: str, columns: Sequence[str]) -> PartWriter:
        """Open a new part (each name once)."""
        if name in self._parts or name in self._open:
            raise ValueError(f"part {name} already written")
        writer = PartWriter(self, _check_part_name(name), columns)
        self._open[name] = writer
        return writer

    def finish(self, **details: Any) -> dict[str, Any]:
        """Close every part and write the sealed manifest; returns the manifest.

        Args:
            details: JSON-serialisable facts recorded in the manifest (counts, audit head).
        """
        for name, writer in self._open.items():
            self._parts[name] = writer.close()
        self._open.clear()
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "backup_id": self.backup_id,
            "created_at": datetime.now(UTC).isoformat(),
            "source": self._source,
            "key": {
                "kek_id": self._wrapped.kek_id,
                "blob": base64.b64encode(self._wrapped.blob).decode(),
            },
            "parts": self._parts,
            **details,
        }
        nonce = os.urandom(_NONCE_BYTES)
        digest = hashlib.sha256(_canonical(manifest)).digest()
        seal = nonce + self.cipher.encrypt(nonce, digest, b"manifest")
        manifest["seal"] = base64.b64encode(seal).decode()
        _fsync_write(self.directory / MANIFEST, json.dumps(manifest, indent=2).encode())
        return manifest


class ArchiveReader:
    """An archive opened for restore: the manifest verified, the key unwrapped."""

    def __init__(self, directory: Path, manifest: dict[str, Any], key: bytes) -> None:
        self.directory = directory
        self.manifest = manifest
        self._cipher = AESGCM(key)

    @classmethod
    async def open(cls, directory: Path, keys: ports.KeyProvider) -> ArchiveReader:
        """Read and authenticate the manifest.

        Raises:
            BackupCorruptError: No manifest, another format, or a manifest that was edited.
            KeyAccessError: The archive key cannot be unwrapped with this key provider.
        """
        path = directory / MANIFEST
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError):
            raise errors.BackupCorruptError(f"{path}: no readable backup manifest") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise errors.BackupCorruptError(f"{path}: not a {FORMAT} archive")
        try:
            wrapped = ports.WrappedKey(
                str(manifest["key"]["kek_id"]), base64.b64decode(manifest["key"]["blob"])
            )
            seal = base64.b64decode(manifest["seal"])
        except (KeyError, TypeError, ValueError):
            raise errors.BackupCorruptError(f"{path}: manifest fields missing") from None
        try:
            key = await keys.unwrap(wrapped, context=_context(str(manifest["backup_id"])))
        except errors.DataKeyDamagedError:
            raise errors.KeyAccessError(
                f"{path}: the archive key does not open with this environment's keys (another "
                "environment's key-encryption key, or the manifest's key altered)"
            ) from None
        try:
            digest = AESGCM(key).decrypt(seal[:_NONCE_BYTES], seal[_NONCE_BYTES:], b"manifest")
        except InvalidTag:
            raise errors.BackupCorruptError(f"{path}: the manifest was altered") from None
        if digest != hashlib.sha256(_canonical(manifest)).digest():
            raise errors.BackupCorruptError(f"{path}: the manifest was altered")
        return cls(directory, manifest, key)

    @property
    def parts(self) -> dict[str, dict[str, Any]]:
        """Manifest entries of the parts, by name."""
        parts: dict[str, dict[str, Any]] = self.manifest["parts"]
        return parts

    def verify_digests(self) -> None:
        """Check every part file against its SHA-256 (before anything is restored).

        Raises:
            BackupCorruptError: A part is missing or its bytes changed.
        """
        for name, entry in self.parts.items():
            digest = hashlib.sha256()
            try:
                with (self.directory / f"{name}{_SUFFIX}").open("rb") as handle:
                    while block := handle.read(1 << 20):
                        digest.update(block)
            except OSError:
                raise errors.BackupCorruptError(f"backup part {name} is missing") from None
            if digest.hexdigest() != entry["sha256"]:
                raise errors.BackupCorruptError(f"backup part {name} does not match its digest")

    def batches(self, name: str) -> Iterator[list[tuple[Any, ...]]]:
        """The part's rows, one decrypted chunk at a time.

        Raises:
            BackupCorruptError: A chunk fails authentication, chunks are missing or extra, or
                the row count differs from the manifest.
        """
        entry = self.parts[name]
        backup_id = str(self.manifest["backup_id"])
        rows = 0
        with (self.directory / f"{name}{_SUFFIX}").open("rb") as handle:
            for index in range(int(entry["chunks"])):
                header = handle.read(_LENGTH.size)
                if len(header) != _LENGTH.size:
                    raise errors.BackupCorruptError(f"backup part {name} is truncated")
                (length,) = _LENGTH.unpack(header)
                sealed = handle.read(length)
                final = index == int(entry["chunks"]) - 1
                try:
                    plaintext = self._cipher.decrypt(
                        sealed[:_NONCE_BYTES],
                        sealed[_NONCE_BYTES:],
                        _aad(backup_id, name, index, final),
                    )
                except (InvalidTag, ValueError):
                    raise errors.BackupCorruptError(
                        f"backup part {name}: chunk {index} fails authentication"
                    ) from None
                batch = [
                    tuple(_decode(v) for v in json.loads(line)) for line in plaintext.splitlines()
                ]
                rows += len(batch)
                if batch:
                    yield batch
            if handle.read(1):
                raise errors.BackupCorruptError(f"backup part {name} has data after its end")
        if rows != int(entry["rows"]):
            raise errors.BackupCorruptError(
                f"backup part {name}: {rows} rows where the manifest says {entry['rows']}"
            )
