"""Re-wrapping data keys: the store's paging, compare-and-swap and counts, and the re-wrap.

Every store runs in memory, on SQLite and on a real PostgreSQL (the ``data_key_store``
fixture). The key provider is the real local key folder; where a race has to happen at one
exact step, a thin provider in front of it makes that step happen there.
"""

from __future__ import annotations

import os

import pytest

from storage.local import LocalKeyProvider
from twin import errors, ports
from twin.ports import WrappedKey
from twin.service.keys import RewrapProgress, rewrap_data_keys


async def _keys(keys: ports.KeyProvider, store: ports.DataKeyStore, n: int) -> list[str]:
    ids = [f"p{i:04d}" for i in range(n)]
    for pid in ids:
        await store.put_if_absent(pid, await keys.wrap(os.urandom(32), context=pid))
    return ids


async def test_scan_pages_in_patient_order_and_counts_per_kek(data_key_store):
    for i, pid in enumerate(["b", "a", "d", "c", "e"]):
        await data_key_store.put_if_absent(pid, WrappedKey(f"kek-{1 + i % 2}.key", b"x"))
    seen, cursor = [], None
    while page := await data_key_store.scan(after=cursor, limit=2):
        assert len(page) <= 2
        seen += [pid for pid, _ in page]
        cursor = page[-1][0]
    assert seen == ["a", "b", "c", "d", "e"]
    assert await data_key_store.scan(after="e", limit=10) == []
    assert [p for p, _ in await data_key_store.scan(after="b", limit=2)] == ["c", "d"]
    assert await data_key_store.count_by_kek() == {"kek-1.key": 3, "kek-2.key": 2}
    await data_key_store.delete("a")
    assert await data_key_store.count_by_kek() == {"kek-1.key": 3, "kek-2.key": 1}


async def test_a_swap_never_brings_back_a_shredded_key(data_key_store):
    old = WrappedKey("kek-1.key", b"old")
    await data_key_store.put_if_absent("p", old)
    (pid, read), *_ = await data_key_store.scan(after=None, limit=1)
    assert (pid, read) == ("p", old)
    assert await data_key_store.delete("p")  # the patient is erased between read and swap
    assert not await data_key_store.replace_if("p", read, WrappedKey("kek-2.key", b"new"))
    assert await data_key_store.get("p") is None
    assert await data_key_store.count_by_kek() == {}


class _ShredOnUnwrap:
    """The local provider, erasing one patient the moment its key has been read for re-wrap."""

    def __init__(self, keys: LocalKeyProvider, store: ports.DataKeyStore, victim: str) -> None:
        self._keys, self._store, self._victim = keys, store, victim

    async def current_kek_id(self) -> str:
        return await self._keys.current_kek_id()

    async def wrap(self, data_key: bytes, *, context: str) -> WrappedKey:
        return await self._keys.wrap(data_key, context=context)

    async def unwrap(self, wrapped: WrappedKey, *, context: str) -> bytes:
        key = await self._keys.unwrap(wrapped, context=context)
        if context == self._victim:
            assert await self._store.delete(context)
        return key


async def test_a_patient_erased_during_the_rewrap_keeps_no_key(tmp_path, data_key_store):
    keys = LocalKeyProvider(tmp_path / "keys")
    ids = await _keys(keys, data_key_store, 5)
    await keys.rotate()
    report = await rewrap_data_keys(_ShredOnUnwrap(keys, data_key_store, ids[2]), data_key_store)
    assert (report.rewrapped, report.erased, report.failed) == (4, 1, 0)
    assert await data_key_store.get(ids[2]) is None
    assert await data_key_store.count_by_kek() == {"kek-2.key": 4}


async def test_an_interrupted_rewrap_is_finished_by_running_it_again(tmp_path, data_key_store):
    keys = LocalKeyProvider(tmp_path / "keys")
    ids = await _keys(keys, data_key_store, 25)
    await keys.rotate()
    steps: list[RewrapProgress] = []

    def stop_after_one_page(step: RewrapProgress) -> None:
        steps.append(step)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await rewrap_data_keys(keys, data_key_store, batch=10, progress=stop_after_one_page)
    assert (steps[0].scanned, steps[0].rewrapped, steps[0].total) == (10, 10, 25)
    assert await data_key_store.count_by_kek() == {"kek-1.key": 15, "kek-2.key": 10}
    done = await rewrap_data_keys(keys, data_key_store, batch=10, concurrency=3)
    assert (done.rewrapped, done.already_current, done.erased, done.failed) == (15, 10, 0, 0)
    assert steps[0].rewrapped + done.rewrapped == len(ids)
    assert (done.passes, done.remaining) == (1, {})
    assert await data_key_store.count_by_kek() == {"kek-2.key": 25}


async def test_a_key_that_does_not_unwrap_is_reported_and_left_alone(tmp_path, data_key_store):
    keys = LocalKeyProvider(tmp_path / "keys")
    await _keys(keys, data_key_store, 3)
    damaged = WrappedKey("kek-1.key", b"\0" * 60)
    await data_key_store.put_if_absent("p-damaged", damaged)
    await keys.rotate()
    report = await rewrap_data_keys(keys, data_key_store)
    assert (report.rewrapped, report.failed) == (3, 1)
    assert report.failures[0].startswith("p-damaged: KeyAccessError")
    assert report.remaining == {"kek-1.key": 1}
    assert await data_key_store.get("p-damaged") == damaged


async def test_bounds_are_checked(tmp_path, data_key_store):
    keys = LocalKeyProvider(tmp_path / "keys")
    for bad in ({"batch": 0}, {"concurrency": 0}, {"max_passes": 11}):
        with pytest.raises(ValueError, match="must be within"):
            await rewrap_data_keys(keys, data_key_store, **bad)


async def test_a_running_process_follows_the_key_folder(tmp_path):
    service = LocalKeyProvider(tmp_path / "keys")  # loaded its KEKs once, long ago
    before = await service.wrap(b"k" * 32, context="p1")
    assert before.kek_id == "kek-1.key"
    operator = LocalKeyProvider(tmp_path / "keys")  # `novamind keys rotate --new-kek`
    assert await operator.rotate() == "kek-2.key"
    rewrapped = await operator.wrap(await operator.unwrap(before, context="p1"), context="p1")
    # The service unwraps under the KEK it had never seen, and wraps new keys under it.
    assert await service.unwrap(rewrapped, context="p1") == b"k" * 32
    assert (await service.wrap(b"n" * 32, context="p2")).kek_id == "kek-2.key"
    # Retired elsewhere: never used again, even though this process held it in memory.
    await operator.retire("kek-1.key")
    assert (tmp_path / "keys" / "retired" / "kek-1.key").exists()
    assert not (tmp_path / "keys" / "kek-1.key").exists()
    assert (await service.wrap(b"m" * 32, context="p3")).kek_id == "kek-2.key"
    with pytest.raises(errors.KeyAccessError, match="unknown"):
        await service.unwrap(before, context="p1")
    await operator.retire("kek-1.key", destroy=True)
    assert not (tmp_path / "keys" / "retired" / "kek-1.key").exists()


async def test_the_current_kek_is_never_retired(tmp_path):
    keys = LocalKeyProvider(tmp_path / "keys")
    await keys.rotate()
    with pytest.raises(errors.KeyAccessError, match="current"):
        await keys.retire("kek-2.key")
    for name in ("kek-9.key", "../kek-1.key", "kek-1.key/.."):
        with pytest.raises(errors.KeyAccessError):
            await keys.retire(name)
    assert sorted(p.name for p in (tmp_path / "keys").glob("kek-*.key")) == [
        "kek-1.key",
        "kek-2.key",
    ]


async def test_a_missing_kek_is_not_looked_for_on_every_read(tmp_path, monkeypatch):
    keys = LocalKeyProvider(tmp_path / "keys")
    wrapped = await keys.wrap(b"k" * 32, context="p1")
    listings = []
    real = os.listdir
    monkeypatch.setattr(os, "listdir", lambda path: listings.append(path) or real(path))
    gone = WrappedKey("kek-7.key", wrapped.blob)
    for _ in range(5):
        with pytest.raises(errors.KeyAccessError, match="unknown"):
            await keys.unwrap(gone, context="p1")
    assert len(listings) == 1
