"""CheckpointStore contract: newest wins, damage is detected."""

import pytest

from storage.local import LocalCheckpointStore
from twin import errors
from twin.ports import Checkpoint


def ckpt(seq: int, data: bytes = b"state", patient: str = "p1") -> Checkpoint:
    return Checkpoint(patient, seq, "novamind-twin/1.0", data)


async def test_newer_replaces_older_never_the_reverse(checkpoint_store):
    assert await checkpoint_store.latest("p1") is None
    assert await checkpoint_store.put(ckpt(5, b"five"))
    assert await checkpoint_store.put(ckpt(9, b"nine"))
    assert not await checkpoint_store.put(ckpt(7, b"seven"))
    assert not await checkpoint_store.put(ckpt(9, b"nine again"))
    latest = await checkpoint_store.latest("p1")
    assert latest is not None and (latest.seq, latest.data) == (9, b"nine")
    assert latest.model_version == "novamind-twin/1.0"


async def test_delete_all(checkpoint_store):
    await checkpoint_store.put(ckpt(1))
    assert await checkpoint_store.delete_all("p1") >= 1
    assert await checkpoint_store.latest("p1") is None


async def test_local_erasure_removes_what_a_killed_write_left_behind(tmp_path):
    store = LocalCheckpointStore(tmp_path)
    await store.put(ckpt(1, b"sealed twin"))
    folder = _newest_file(tmp_path).parent
    (folder / ".0123abcd.tmp").write_bytes(b"sealed twin, half written")  # killed mid-write
    assert await store.delete_all("p1") == 1
    assert list(folder.iterdir()) == []


def _newest_file(root):
    return max(p for p in root.rglob("*.ckpt"))


@pytest.mark.parametrize("damage", ["truncate", "flip"])
async def test_local_torn_or_altered_files_are_never_read_as_valid(tmp_path, damage):
    store = LocalCheckpointStore(tmp_path)
    await store.put(ckpt(3, b"x" * 1000))
    path = _newest_file(tmp_path)
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[:-10]
    else:
        raw[-5] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(errors.CheckpointCorruptError, match="seq 3"):
        await store.latest("p1")


async def test_local_keeps_only_the_newest_and_hides_patient_ids(tmp_path):
    store = LocalCheckpointStore(tmp_path, keep=2)
    for seq in range(1, 6):
        await store.put(ckpt(seq, patient="MRN-123456"))
    files = sorted(tmp_path.rglob("*.ckpt"))
    assert [int(p.stem) for p in files] == [4, 5]
    assert all("MRN" not in str(p) for p in tmp_path.rglob("*"))


async def test_s3_altered_objects_are_refused(moto_server):
    from tests.contract.conftest import _s3_store

    store = _s3_store(moto_server)
    await store.put(ckpt(4, b"y" * 100))
    s3 = store._s3
    key = store._keys("p1")[0][1]
    head = s3.head_object(Bucket=store._bucket, Key=key)
    s3.put_object(Bucket=store._bucket, Key=key, Body=b"z" * 100, Metadata=head["Metadata"])
    with pytest.raises(errors.CheckpointCorruptError, match="seq 4"):
        await store.latest("p1")
