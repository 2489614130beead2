"""The audit anchor store's contract: the in-memory fake, the local file, S3 Object Lock (moto).

Beyond the contract, what each adapter promises against tampering: the local file detects an
edited or removed earlier line and lets concurrent processes append whole lines; S3 keeps
every anchor under COMPLIANCE retention, where a later PUT to the key adds a version that
cannot hide the first, and a version cannot be deleted.
"""

from __future__ import annotations

import hashlib
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
    server: MotoServer, *, retention_days: int = 2192, page_size: int = 1000
) -> tuple[Any, str, S3AuditAnchorStore]:
    s3 = server.client("s3")
    bucket = f"anchors-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)  # type: ignore[attr-defined]
    store = S3AuditAnchorStore(
        s3, bucket, prefix="prod", retention_days=retention_days, page_size=page_size
    )
    return s3, bucket, store


def _s3_key(anchor: AuditAnchor) -> str:
    at = datetime.fromisoformat(anchor.at).astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"prod/{anchor.entries:020d}-{at}-{anchor.head_hash}.json"


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


async def test_a_scan_from_a_length_holds_the_anchors_from_it_on(anchors):
    for n, minute in ((0, 0), (10, 1), (20, 2), (20, 3), (30, 4)):
        await anchors.put(_anchor(n, at_minute=minute))
    assert [a.entries for a in (await anchors.scan()).anchors] == [0, 10, 20, 20, 30]
    scan = await anchors.scan(min_entries=20)
    assert [a.entries for a in scan.anchors] == [20, 20, 30] and scan.unreadable_count == 0
    assert (await anchors.scan(min_entries=31)).anchors == ()


# --- the local file ---------------------------------------------------------------------------


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


async def test_each_anchor_read_carries_when_its_store_recorded_it_never_its_own_time(anchors):
    ahead = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)  # a clock, or forger
    await anchors.put(AuditAnchor(7, "7" * 64, ahead.isoformat(timespec="milliseconds")))
    (read,) = (await anchors.scan()).anchors
    assert read.recorded_at is not None and read.when() == ahead
    assert abs((read.recorded_at - datetime.now(UTC)).total_seconds()) < 60
    assert read.future_dated(datetime.now(UTC))


async def test_the_local_file_is_private_and_each_line_links_the_sha256_of_the_one_before(
    tmp_path,
):
    path = tmp_path / "keys" / "audit-anchors.jsonl"
    store = LocalAuditAnchorStore(path)
    for n in (10, 20, 30):
        await store.put(_anchor(n))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = _lines(path)
    records = [json.loads(line) for line in lines]
    assert records[0]["prev"] == GENESIS
    assert [r["prev"] for r in records[1:]] == [hashlib.sha256(x).hexdigest() for x in lines[:2]]


async def test_the_local_file_is_made_private_again_and_never_followed_through_a_link(tmp_path):
    path = tmp_path / "audit-anchors.jsonl"
    store = LocalAuditAnchorStore(path)
    await store.put(_anchor(10))
    path.chmod(0o644)
    await store.put(_anchor(20))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    elsewhere = tmp_path / "elsewhere.jsonl"
    path.rename(elsewhere)
    path.symlink_to(elsewhere)  # planted in its place: anchors would go where the link points
    with pytest.raises(OSError, match="symbolic links"):
        await store.put(_anchor(30))
    with pytest.raises(OSError, match="symbolic links"):
        await store.scan()
    assert len(_lines(elsewhere)) == 2


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


async def test_a_torn_last_line_is_reported_as_a_note_then_cut_by_the_next_append(tmp_path):
    path = tmp_path / "audit-anchors.jsonl"
    store = LocalAuditAnchorStore(path)
    await store.put(_anchor(10))
    with path.open("ab") as f:
        f.write(b'{"at":"2026-12-01T1')  # a crash mid-write (or a cut): never acknowledged
    scan = await store.scan()
    assert scan.anchors == (_anchor(10),) and scan.unreadable_count == 0
    assert len(scan.notes) == 1 and "last line" in scan.notes[0]  # never silent
    await store.put(_anchor(20))
    assert await store.all() == [_anchor(10), _anchor(20)]
    assert len(_lines(path)) == 2 and (await store.scan()).notes == ()


async def test_a_damaged_line_hides_no_other_anchor_and_is_named_by_its_number(tmp_path):
    path = tmp_path / "audit-anchors.jsonl"
    store = LocalAuditAnchorStore(path)
    for n in (10, 20, 30):
        await store.put(_anchor(n))
    lines = _lines(path)
    lines[1] = b"x" * 5000  # over the line bound: damaged, and read in bounded pieces
    path.write_bytes(b"\n".join(lines) + b"\n")
    scan = await store.scan()
    assert [a.entries for a in scan.anchors] == [10, 30]
    assert scan.unreadable == ("audit anchor file line 2 is damaged (over 1024 bytes)",)
    with pytest.raises(errors.AuditAnchorCorruptError, match="line 2"):
        await store.all()


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


async def test_s3_anchors_are_locked_in_compliance_mode_under_sse_s3_and_keyed_whole(
    moto_server,
):
    s3, bucket, store = _s3_store(moto_server, retention_days=30)
    anchor = _anchor(1000)
    await store.put(anchor)
    (version,) = s3.list_object_versions(Bucket=bucket)["Versions"]
    head = s3.head_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
    # Every field is in the key: reading the anchors is a listing.
    assert (
        version["Key"]
        == (f"prod/{1000:020d}-20261201T100000.000000Z-{1000:064x}.json")
        == _s3_key(anchor)
    )
    assert head["ObjectLockMode"] == "COMPLIANCE"
    until = head["ObjectLockRetainUntilDate"]
    assert abs(until - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=5)
    # SSE-S3: no KMS key whose deletion could make a locked anchor unreadable.
    assert head["ServerSideEncryption"] == "AES256"


async def test_s3_anchors_are_read_by_listing_alone_across_pages(moto_server):
    s3, _, store = _s3_store(moto_server, page_size=2)
    written = [_anchor(n, at_minute=n % 60) for n in (5, 1, 4, 2, 3)]
    for anchor in written:
        await store.put(anchor)

    def no_get(**_: Any) -> None:
        raise AssertionError("an anchor's body was read")

    s3.meta.events.register("before-call.s3.GetObject", no_get)
    assert await store.all() == sorted(written, key=lambda a: a.entries)  # three pages
    assert [a.entries for a in (await store.scan(min_entries=4)).anchors] == [4, 5]


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
    s3.put_object(Bucket=bucket, Key=key, Body=b"anything at all")
    assert await store.all() == [first, first]  # the key is the anchor; the body is not read


@pytest.mark.parametrize(
    "name",
    [
        "stray.json",
        f"{1000:020d}-{1000:064x}.json",  # no time
        f"{2**63:020d}-20261201T100000.000000Z-{1000:064x}.json",  # past the largest seq
        f"{1000:020d}-20261341T100000.000000Z-{1000:064x}.json",  # no such day
        "x" * 1000 + ".json",
    ],
    ids=["stray", "no-time", "too-long-a-chain", "bad-date", "long-name"],
)
async def test_an_s3_object_that_is_not_an_anchor_is_named_by_its_place_never_its_key(
    moto_server, name
):
    s3, bucket, store = _s3_store(moto_server)
    assert await store.all() == []  # a clean store first: the object below is the only fault
    await store.put(_anchor(1000))
    await store.put(_anchor(3000))
    s3.put_object(Bucket=bucket, Key=f"prod/{name}", Body=b"{}")
    scan = await store.scan()
    assert [a.entries for a in scan.anchors] == [1000, 3000]  # the others are still held
    assert scan.unreadable_count == 1
    (named,) = scan.unreadable
    assert named.startswith("object version ") and "listed, written 20" in named
    assert name[:20] not in named and len(named) < 80
    with pytest.raises(errors.AuditAnchorCorruptError) as caught:
        await store.all()
    assert name[:20] not in str(caught.value)


def test_s3_anchor_retention_and_page_are_bounded():
    for days in (0, 36_501):
        with pytest.raises(errors.ConfigurationError):
            S3AuditAnchorStore(object(), "b", retention_days=days)
    for page in (0, 1001):
        with pytest.raises(errors.ConfigurationError):
            S3AuditAnchorStore(object(), "b", retention_days=2192, page_size=page)
