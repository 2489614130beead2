"""The audit anchor store's contract: the in-memory fake, the local file, S3 Object Lock (moto).

Beyond the contract, what each adapter promises against tampering: the local file detects an
edited or removed earlier line and lets concurrent processes append whole lines; S3 keeps
every anchor under COMPLIANCE retention, where a later PUT to the key adds a version that
cannot hide the first, and a version cannot be deleted.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from storage.local import LocalAuditAnchorStore
from storage.s3 import S3AuditAnchorStore
from tests.servers import MotoServer
from twin import errors, ports
from twin.domain.audit import GENESIS, AuditAnchor
from twin.testing import fakes

ROOT = Path(__file__).resolve().parents[2]


def _anchor(entries: int, at_minute: int = 0, head: str | None = None) -> AuditAnchor:
    head = head or (GENESIS if entries == 0 else f"{entries:064x}")
    return AuditAnchor(entries, head, f"2026-12-01T10:{at_minute:02d}:00.000+00:00")


def _s3_store(
    server: MotoServer, *, retention_days: int = 2192
) -> tuple[Any, str, S3AuditAnchorStore]:
    s3 = server.client("s3")
    kms = server.client("kms")
    bucket = f"anchors-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)  # type: ignore[attr-defined]
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]  # type: ignore[attr-defined]
    store = S3AuditAnchorStore(
        s3, bucket, prefix="prod", retention_days=retention_days, kms_key_id=key_id
    )
    return s3, bucket, store


@pytest.fixture(params=["memory", "local", "s3"])
def anchors(request: pytest.FixtureRequest, tmp_path: Path) -> ports.AuditAnchorStore:
    if request.param == "memory":
        return fakes.MemoryAuditAnchorStore()
    if request.param == "local":
        return LocalAuditAnchorStore(tmp_path / "keys" / "audit-anchors.jsonl")
    return _s3_store(request.getfixturevalue("moto_server"))[2]


async def test_anchors_are_kept_and_listed_by_length_then_time(anchors):
    assert isinstance(anchors, ports.AuditAnchorStore)
    assert await anchors.all() == []
    written = [_anchor(2000, 5), _anchor(1000, 1), _anchor(1000, 0), _anchor(3000, 9)]
    for anchor in written:
        await anchors.put(anchor)
    assert await anchors.all() == [written[2], written[1], written[0], written[3]]


async def test_an_anchor_written_again_never_replaces_the_first(anchors):
    first = _anchor(500, 0)
    await anchors.put(first)
    await anchors.put(_anchor(500, 7))  # the same head, anchored again later
    other = _anchor(500, 8, head="f" * 64)  # a different head at the same length
    await anchors.put(other)
    kept = await anchors.all()
    assert kept[0] == first and len(kept) == 3 and other in kept


# --- the local file ---------------------------------------------------------------------------


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


async def test_the_local_file_is_private_and_hash_linked(tmp_path):
    path = tmp_path / "keys" / "audit-anchors.jsonl"
    store = LocalAuditAnchorStore(path)
    for n in (10, 20, 30):
        await store.put(_anchor(n))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    records = [json.loads(line) for line in _lines(path)]
    assert records[0]["prev"] == GENESIS and records[1]["prev"] != records[2]["prev"]


@pytest.mark.parametrize("tamper", ["edit", "remove", "damage"])
async def test_the_local_file_detects_an_earlier_line_edited_or_removed(tmp_path, tamper):
    path = tmp_path / "audit-anchors.jsonl"
    store = LocalAuditAnchorStore(path)
    for n in (10, 20, 30):
        await store.put(_anchor(n))
    lines = _lines(path)
    if tamper == "edit":
        record = json.loads(lines[0])
        record["head_hash"] = "e" * 64
        lines[0] = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    elif tamper == "remove":
        del lines[1]
    else:
        lines[1] = lines[1][:-9]
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(errors.AuditAnchorCorruptError, match="line 2"):
        await store.all()


async def test_a_line_torn_by_a_crash_is_ignored_then_cut_by_the_next_append(tmp_path):
    path = tmp_path / "audit-anchors.jsonl"
    store = LocalAuditAnchorStore(path)
    await store.put(_anchor(10))
    with path.open("ab") as f:
        f.write(b'{"at":"2026-12-01T1')  # a crash mid-write: never acknowledged
    assert await store.all() == [_anchor(10)]
    await store.put(_anchor(20))
    assert await store.all() == [_anchor(10), _anchor(20)]
    assert len(_lines(path)) == 2


_WRITER = """
import asyncio, sys
from pathlib import Path
from storage.local import LocalAuditAnchorStore
from twin.domain.audit import AuditAnchor

async def main(path, base):
    store = LocalAuditAnchorStore(Path(path))
    for i in range(25):
        n = base + i
        await store.put(AuditAnchor(n, f"{n:064x}", "2026-12-01T10:00:00.000+00:00"))

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def test_concurrent_processes_append_whole_linked_lines(tmp_path):
    path = tmp_path / "audit-anchors.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(1000 * (k + 1))], env=env)
        for k in range(4)
    ]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    import asyncio

    kept = asyncio.run(LocalAuditAnchorStore(path).all())  # every link checks
    assert sorted(a.entries for a in kept) == sorted(
        1000 * (k + 1) + i for k in range(4) for i in range(25)
    )


# --- S3 Object Lock ---------------------------------------------------------------------------


async def test_s3_anchors_are_locked_in_compliance_mode_and_encrypted(moto_server):
    s3, bucket, store = _s3_store(moto_server, retention_days=30)
    await store.put(_anchor(1000))
    (version,) = s3.list_object_versions(Bucket=bucket)["Versions"]
    head = s3.head_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
    assert version["Key"] == f"prod/{1000:020d}-{1000:064x}.json"
    assert head["ObjectLockMode"] == "COMPLIANCE"
    until = head["ObjectLockRetainUntilDate"]
    assert abs(until - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=5)
    assert head["ServerSideEncryption"] == "aws:kms"


async def test_an_s3_anchor_can_be_neither_deleted_nor_hidden(moto_server):
    s3, bucket, store = _s3_store(moto_server)
    first = _anchor(1000)
    await store.put(first)
    (version,) = s3.list_object_versions(Bucket=bucket)["Versions"]
    key, version_id = version["Key"], version["VersionId"]
    # Deleting the locked version is refused (moto answers AccessDenied, as S3 does).
    with pytest.raises(ClientError, match="AccessDenied"):
        s3.delete_object(Bucket=bucket, Key=key, VersionId=version_id)
    with pytest.raises(ClientError, match="AccessDenied"):
        s3.delete_object(
            Bucket=bucket, Key=key, VersionId=version_id, BypassGovernanceRetention=True
        )
    # A plain delete only adds a marker, and a later PUT only adds a version: the first stays.
    s3.delete_object(Bucket=bucket, Key=key)
    assert await store.all() == [first]
    forged = {"entries": 1000, "head_hash": f"{1000:064x}", "at": "2027-01-01T00:00:00+00:00"}
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(forged).encode())
    kept = await store.all()
    assert first in kept and len(kept) == 2


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"entries": 1000}', b'{"entries":7,"head_hash":"' + b"7" * 64 + b'"}'],
    ids=["not-json", "fields-missing", "name-disagrees"],
)
async def test_a_damaged_s3_anchor_is_an_error_never_skipped(moto_server, body):
    s3, bucket, store = _s3_store(moto_server)
    await store.put(_anchor(1000))
    s3.put_object(Bucket=bucket, Key=f"prod/{1000:020d}-{1000:064x}.json", Body=body)
    with pytest.raises(errors.AuditAnchorCorruptError, match=r"damaged|disagrees"):
        await store.all()
    s3.put_object(Bucket=bucket, Key="prod/stray.json", Body=b"{}")
    with pytest.raises(errors.AuditAnchorCorruptError):
        await store.all()


def test_s3_anchor_retention_is_bounded():
    for days in (0, 36_501):
        with pytest.raises(errors.ConfigurationError):
            S3AuditAnchorStore(object(), "b", retention_days=days, kms_key_id=None)
