"""Backup archives: round trip of every value type, and every kind of tampering detected."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime

import pytest

from storage.local import LocalKeyProvider
from storage.sealed import ArchiveReader, ArchiveWriter, archive
from twin import errors

ROWS = [
    ("p1", 1, 0.1 + 0.2, b"\x00\xff sealed", None, datetime(2026, 1, 2, 3, 4, 5, 678, UTC)),
    ("p2", 2**62, -1e-300, b"", True, None),
    ("p3", 0, float(3), bytes(range(256)), False, datetime(1999, 12, 31, tzinfo=UTC)),
]
COLUMNS = ("id", "seq", "x", "blob", "flag", "at")


async def _write(tmp_path, keys, rows=ROWS):
    folder = tmp_path / "archive"
    writer = await ArchiveWriter.create(folder, keys, source="sqlite")
    writer.part("things", COLUMNS).write(rows)
    writer.part("flags", ("patient", "alerts")).write([("p1", ["a", "b"]), ("p2", [])])
    manifest = writer.finish(tables={"things": len(rows)})
    return folder, manifest


async def test_round_trip_keeps_every_value_exactly(tmp_path):
    keys = LocalKeyProvider(tmp_path / "keys")
    folder, manifest = await _write(tmp_path, keys)
    reader = await ArchiveReader.open(folder, keys)
    reader.verify_digests()
    assert reader.manifest == manifest and manifest["tables"] == {"things": 3}
    assert [row for batch in reader.batches("things") for row in batch] == ROWS
    assert [row for batch in reader.batches("flags") for row in batch] == [
        ("p1", ["a", "b"]),
        ("p2", []),
    ]


async def test_a_new_archive_needs_an_empty_folder(tmp_path):
    keys = LocalKeyProvider(tmp_path / "keys")
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / "old").write_text("x")
    with pytest.raises(errors.ConfigurationError, match="not empty"):
        await ArchiveWriter.create(tmp_path / "archive", keys, source="sqlite")


async def test_large_parts_span_chunks_and_truncation_is_detected(tmp_path, monkeypatch):
    monkeypatch.setattr(archive, "_CHUNK_BYTES", 256)
    keys = LocalKeyProvider(tmp_path / "keys")
    rows = [(f"p{i}", i, float(i), b"x" * 50, None, None) for i in range(100)]
    folder, manifest = await _write(tmp_path, keys, rows)
    assert manifest["parts"]["things"]["chunks"] > 10
    reader = await ArchiveReader.open(folder, keys)
    assert [r for b in reader.batches("things") for r in b] == rows
    # Drop the final chunk (and pretend the manifest agreed): the new last chunk is not final.
    part = folder / "things.nmb"
    data = part.read_bytes()
    offsets, at = [], 0
    while at < len(data):
        offsets.append(at)
        at += 4 + int.from_bytes(data[at : at + 4], "big")
    part.write_bytes(data[: offsets[-1]])
    reader.manifest["parts"]["things"]["chunks"] -= 1
    with pytest.raises(errors.BackupCorruptError, match="fails authentication"):
        [r for b in reader.batches("things") for r in b]


async def test_swapped_chunks_fail_authentication(tmp_path, monkeypatch):
    monkeypatch.setattr(archive, "_CHUNK_BYTES", 128)
    keys = LocalKeyProvider(tmp_path / "keys")
    rows = [(f"p{i}", i, 0.0, b"y" * 40, None, None) for i in range(20)]
    folder, _ = await _write(tmp_path, keys, rows)
    part = folder / "things.nmb"
    data = part.read_bytes()
    first = 4 + int.from_bytes(data[:4], "big")
    second = first + 4 + int.from_bytes(data[first : first + 4], "big")
    part.write_bytes(data[first:second] + data[:first] + data[second:])
    reader = await ArchiveReader.open(folder, keys)
    with pytest.raises(errors.BackupCorruptError, match="chunk 0 fails authentication"):
        [r for b in reader.batches("things") for r in b]


async def test_edited_bytes_are_caught_by_the_digest(tmp_path):
    keys = LocalKeyProvider(tmp_path / "keys")
    folder, _ = await _write(tmp_path, keys)
    part = folder / "flags.nmb"
    data = bytearray(part.read_bytes())
    data[-1] ^= 0x80
    part.write_bytes(bytes(data))
    reader = await ArchiveReader.open(folder, keys)
    with pytest.raises(errors.BackupCorruptError, match="flags does not match its digest"):
        reader.verify_digests()


async def test_an_edited_manifest_is_refused(tmp_path):
    keys = LocalKeyProvider(tmp_path / "keys")
    folder, manifest = await _write(tmp_path, keys)
    manifest["tables"]["things"] = 2  # hide a row
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(errors.BackupCorruptError, match="manifest was altered"):
        await ArchiveReader.open(folder, keys)


async def test_moving_a_part_between_archives_fails(tmp_path):
    keys = LocalKeyProvider(tmp_path / "keys")
    one, _ = await _write(tmp_path / "1", keys)
    two, manifest_two = await _write(tmp_path / "2", keys)
    (two / "things.nmb").write_bytes((one / "things.nmb").read_bytes())
    reader = await ArchiveReader.open(two, keys)
    # Even with a matching digest, the chunks name another backup id in their AAD.
    reader.manifest["parts"]["things"]["sha256"] = hashlib.sha256(
        (two / "things.nmb").read_bytes()
    ).hexdigest()
    with pytest.raises(errors.BackupCorruptError, match="fails authentication"):
        [r for b in reader.batches("things") for r in b]
    assert manifest_two["backup_id"] != json.loads((one / "manifest.json").read_text())["backup_id"]


async def test_another_key_encryption_key_cannot_open_it(tmp_path):
    folder, manifest = await _write(tmp_path, LocalKeyProvider(tmp_path / "keys"))
    assert base64.b64decode(manifest["key"]["blob"])  # only the wrapped key is stored
    with pytest.raises(errors.KeyAccessError):
        await ArchiveReader.open(folder, LocalKeyProvider(tmp_path / "other-keys"))


async def test_not_an_archive(tmp_path):
    keys = LocalKeyProvider(tmp_path / "keys")
    with pytest.raises(errors.BackupCorruptError, match="no readable backup manifest"):
        await ArchiveReader.open(tmp_path, keys)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "tarball"}))
    with pytest.raises(errors.BackupCorruptError, match="not a novamind-backup/1 archive"):
        await ArchiveReader.open(tmp_path, keys)
