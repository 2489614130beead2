"""Re-wrapping data keys, the key folder shared by processes, and KMS key ids.

The store's paging, compare-and-swap and counts; the re-wrap's passes, races and failures.

Every store runs in memory, on SQLite and on a real PostgreSQL (the ``data_key_store``
fixture). The key provider is the real local key folder, or KMS on moto's server; where a race
has to happen at one exact step, a thin provider in front of it makes that step happen there.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from deployments.ops.keys import retire_kek
from deployments.stores import KeyStores
from storage.kms import KmsKeyProvider
from storage.local import LocalKeyProvider
from storage.local.keys import LISTING_FRESH_S
from tests.servers import MotoServer
from twin import errors, ports
from twin.domain.patients import DATA_KEY_DAMAGED
from twin.ports import WrappedKey
from twin.service.keys import MAX_UNAVAILABLE_IN_A_ROW, RewrapProgress, rewrap_data_keys
from twin.testing import fakes


async def _keys(keys: ports.KeyProvider, store: ports.DataKeyStore, n: int) -> list[str]:
    ids = [f"p{i:04d}" for i in range(n)]
    for pid in ids:
        await store.put_if_absent(pid, await keys.wrap(os.urandom(32), context=pid))
    return ids


class _Hooked:
    """The local provider, running ``before_unwrap(patient id)`` as each unwrap starts."""

    def __init__(
        self, keys: ports.KeyProvider, before_unwrap: Callable[[str], Awaitable[None]]
    ) -> None:
        self._keys, self._before = keys, before_unwrap
        self.unwraps = 0

    async def current_kek_id(self) -> str:
        return await self._keys.current_kek_id()

    async def wrap(self, data_key: bytes, *, context: str) -> WrappedKey:
        return await self._keys.wrap(data_key, context=context)

    async def unwrap(self, wrapped: WrappedKey, *, context: str) -> bytes:
        self.unwraps += 1
        await self._before(context)
        return await self._keys.unwrap(wrapped, context=context)


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


async def test_a_patient_erased_during_the_rewrap_keeps_no_key(tmp_path, data_key_store):
    keys = LocalKeyProvider(tmp_path / "keys")
    ids = await _keys(keys, data_key_store, 5)
    await keys.new_kek()

    async def erase(pid: str) -> None:
        if pid == ids[2]:
            assert await data_key_store.delete(pid)

    report = await rewrap_data_keys(_Hooked(keys, erase), data_key_store)
    assert (report.rewrapped, report.erased, report.failed) == (4, 1, 0)
    assert await data_key_store.get(ids[2]) is None
    assert await data_key_store.count_by_kek() == {"kek-2.key": 4}


async def test_a_key_another_run_rewrapped_meanwhile_is_left_as_it_is(tmp_path, data_key_store):
    keys = LocalKeyProvider(tmp_path / "keys")
    ids = await _keys(keys, data_key_store, 4)
    await keys.new_kek()
    other_run: list[WrappedKey] = []

    async def rewrap_elsewhere(pid: str) -> None:
        if pid == ids[1] and not other_run:
            old = await data_key_store.get(pid)
            new = await keys.wrap(await keys.unwrap(old, context=pid), context=pid)
            assert await data_key_store.replace_if(pid, old, new)
            other_run.append(new)

    report = await rewrap_data_keys(_Hooked(keys, rewrap_elsewhere), data_key_store)
    assert (report.rewrapped, report.failed, report.remaining) == (3, 0, {})
    assert await data_key_store.get(ids[1]) == other_run[0]  # not overwritten


async def test_a_key_created_behind_the_cursor_is_caught_by_another_pass(tmp_path, data_key_store):
    keys = LocalKeyProvider(tmp_path / "keys")
    await _keys(keys, data_key_store, 6)
    # Wrapped by a process that had not yet seen the new KEK; stored once the pass is past it.
    stale = await keys.wrap(b"s" * 32, context="a-late")
    await keys.new_kek()

    async def insert_behind(pid: str) -> None:
        if pid == "p0004":
            await data_key_store.put_if_absent("a-late", stale)

    steps: list[RewrapProgress] = []
    report = await rewrap_data_keys(
        _Hooked(keys, insert_behind), data_key_store, batch=4, progress=steps.append
    )
    assert (report.passes, report.rewrapped, report.remaining) == (2, 7, {})
    assert [s.pass_number for s in steps] == [1, 1, 2, 2]
    assert await data_key_store.count_by_kek() == {"kek-2.key": 7}
    late = await data_key_store.get("a-late")
    assert await keys.unwrap(late, context="a-late") == b"s" * 32


async def test_a_newer_kek_created_during_the_pass_is_followed(tmp_path, data_key_store):
    keys = LocalKeyProvider(tmp_path / "keys")
    await _keys(keys, data_key_store, 8)
    await keys.new_kek()
    operator = LocalKeyProvider(tmp_path / "keys")

    async def new_kek_and_new_patients(pid: str) -> None:
        if pid == "p0002":
            assert await operator.new_kek() == "kek-3.key"
            for late in ("p0005a", "p0006a"):  # new patients, ahead of the cursor
                await data_key_store.put_if_absent(
                    late, await operator.wrap(b"n" * 32, context=late)
                )

    hooked = _Hooked(keys, new_kek_and_new_patients)
    report = await rewrap_data_keys(hooked, data_key_store, batch=4, concurrency=1)
    # Keys under kek-3 are never re-wrapped again; the two re-wrapped under kek-2 before it
    # appeared get a second pass.
    assert (report.kek_id, report.remaining, report.passes) == ("kek-3.key", {}, 2)
    assert report.rewrapped == 8 + 2
    assert await data_key_store.count_by_kek() == {"kek-3.key": 10}


async def test_an_interrupted_rewrap_is_finished_by_running_it_again(tmp_path, data_key_store):
    keys = LocalKeyProvider(tmp_path / "keys")
    ids = await _keys(keys, data_key_store, 25)
    await keys.new_kek()
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


async def test_keys_that_do_not_unwrap_are_reported_and_the_run_goes_on(tmp_path, data_key_store):
    keys = LocalKeyProvider(tmp_path / "keys")
    await _keys(keys, data_key_store, 3)
    damaged = {
        "a-short": WrappedKey("kek-1.key", b"\0" * 5),  # too short for AES-GCM's nonce
        "a-tampered": WrappedKey("kek-1.key", b"\0" * 60),
        "a-odd": WrappedKey("kek-1.key", b"\0" * 40),  # the provider fails unexpectedly on it
    }
    for pid, key in damaged.items():
        await data_key_store.put_if_absent(pid, key)
    await keys.new_kek()

    async def fail_unexpectedly(pid: str) -> None:
        if pid == "a-odd":
            raise RuntimeError("unexpected, patient p-odd")

    report = await rewrap_data_keys(_Hooked(keys, fail_unexpectedly), data_key_store, batch=2)
    assert (report.rewrapped, report.failed) == (3, 3)
    assert sorted(report.failures) == [
        "a-odd: RuntimeError",  # its message is not shown: it could quote the row
        f"a-short: DataKeyDamagedError: {DATA_KEY_DAMAGED}",
        f"a-tampered: DataKeyDamagedError: {DATA_KEY_DAMAGED}",
    ]
    assert report.remaining == {"kek-1.key": 3}
    for pid, key in damaged.items():
        assert await data_key_store.get(pid) == key


async def test_a_kek_the_provider_cannot_use_stops_the_run_at_once(tmp_path):
    store = fakes.MemoryDataKeyStore()
    keys = LocalKeyProvider(tmp_path / "keys")
    await _keys(keys, store, 10)
    await keys.new_kek()
    (tmp_path / "keys" / "kek-1.key").rename(tmp_path / "elsewhere.key")  # lost, or moved away
    hooked = _Hooked(keys, lambda pid: _nothing())
    with pytest.raises(
        errors.KeyUnavailableError, match=r"kek-1\.key' is not in the key folder"
    ) as e:
        await rewrap_data_keys(hooked, store, concurrency=1)
    assert hooked.unwraps == 1
    assert "0 data key(s) were re-wrapped before" in e.value.__notes__[0]


async def test_a_provider_failing_again_and_again_stops_the_run(tmp_path):
    store = fakes.MemoryDataKeyStore()
    keys = LocalKeyProvider(tmp_path / "keys")
    await _keys(keys, store, 40)
    await keys.new_kek()
    calls: list[str] = []

    async def kms_down_after_a_blip(pid: str) -> None:
        calls.append(pid)
        if pid in ("p0001", "p0003") or pid >= "p0010":  # a blip is not an outage
            raise errors.StorageUnavailableError("KMS error ThrottlingException; retry")

    with pytest.raises(errors.StorageUnavailableError, match="Throttling") as e:
        await rewrap_data_keys(_Hooked(keys, kms_down_after_a_blip), store, concurrency=1)
    assert len(calls) == 10 + MAX_UNAVAILABLE_IN_A_ROW
    assert "8 data key(s) were re-wrapped before" in e.value.__notes__[0]


async def _nothing() -> None:
    return None


async def test_bounds_are_checked(tmp_path, data_key_store):
    keys = LocalKeyProvider(tmp_path / "keys")
    for bad in ({"batch": 0}, {"concurrency": 0}, {"max_passes": 11}):
        with pytest.raises(ValueError, match="must be within"):
            await rewrap_data_keys(keys, data_key_store, **bad)


class _Clock:
    """Monotonic seconds a test moves on."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_running_process_follows_the_key_folder(tmp_path):
    clock = _Clock()
    service = LocalKeyProvider(tmp_path / "keys", clock=clock)  # loaded its KEKs long ago
    before = await service.wrap(b"k" * 32, context="p1")
    assert before.kek_id == "kek-1.key"
    operator = LocalKeyProvider(tmp_path / "keys", create=False)  # `novamind keys new-kek`
    assert await operator.new_kek() == "kek-2.key"
    rewrapped = await operator.wrap(await operator.unwrap(before, context="p1"), context="p1")
    # The service unwraps under the KEK it had never seen, and wraps new keys under it.
    assert await service.unwrap(rewrapped, context="p1") == b"k" * 32
    assert (await service.wrap(b"n" * 32, context="p2")).kek_id == "kek-2.key"
    # Retired elsewhere: the service, which held it in memory, never unwraps under it again
    # (no wrap in between to make it look), and says so as "unavailable", never "erased".
    await operator.retire("kek-1.key")
    assert (tmp_path / "keys" / "retired" / "kek-1.key").exists()
    assert not (tmp_path / "keys" / "kek-1.key").exists()
    assert await service.unwrap(before, context="p1") == b"k" * 32  # its listing is fresh
    clock.now += LISTING_FRESH_S
    with pytest.raises(
        errors.KeyUnavailableError, match="not in the key folder: it is in retired/"
    ):
        await service.unwrap(before, context="p1")
    # Moved back (to restore an old backup): usable again at once, no waiting.
    await operator.reinstate("kek-1.key")
    assert await service.unwrap(before, context="p1") == b"k" * 32


async def test_retiring_and_destroying_take_only_what_they_may(tmp_path):
    keys = LocalKeyProvider(tmp_path / "keys")
    assert await keys.current_kek_id() == "kek-1.key"  # the first start
    assert await keys.new_kek() == "kek-2.key"
    with pytest.raises(errors.InvalidInputError, match="current"):
        await keys.retire("kek-2.key")
    for name in ("../kek-1.key", "kek-1.key/..", "kek-1.key\n", "kek-01.key"):
        with pytest.raises(errors.InvalidInputError, match="not a key-encryption key name"):
            await keys.retire(name)
    with pytest.raises(errors.NotFoundError):
        await keys.retire("kek-9.key")
    with pytest.raises(errors.InvalidInputError, match="retire it first"):
        await keys.destroy("kek-1.key")
    await keys.retire("kek-1.key")
    with pytest.raises(errors.NotFoundError, match="retired already"):
        await keys.retire("kek-1.key")
    assert await keys.new_kek() == "kek-3.key"
    await keys.destroy("kek-1.key")
    assert sorted(p.name for p in (tmp_path / "keys").rglob("kek-*.key")) == [
        "kek-2.key",
        "kek-3.key",
    ]


async def test_only_a_kek_file_name_counts(tmp_path):
    keys = LocalKeyProvider(tmp_path / "keys")
    assert await keys.current_kek_id() == "kek-1.key"
    (tmp_path / "keys" / "kek-9.key\n").write_bytes(os.urandom(32))
    (tmp_path / "keys" / "kek-8.key.bak").write_bytes(os.urandom(32))
    assert await keys.current_kek_id() == "kek-1.key"
    assert (await keys.wrap(b"k" * 32, context="p")).kek_id == "kek-1.key"


async def test_a_damaged_kek_file_makes_only_its_keys_unavailable(tmp_path, caplog):
    keys = LocalKeyProvider(tmp_path / "keys")
    under_1 = await keys.wrap(b"1" * 32, context="p")
    await keys.new_kek()
    under_2 = await keys.wrap(b"2" * 32, context="p")
    secret = (tmp_path / "keys" / "kek-1.key").read_bytes()
    (tmp_path / "keys" / "kek-1.key").write_bytes(secret[:7])  # an old KEK damaged on disk
    clock = _Clock()
    fresh = LocalKeyProvider(tmp_path / "keys", clock=clock)  # a process starting now
    with caplog.at_level(logging.ERROR, logger="novamind.keys"):
        for _ in range(2):
            with pytest.raises(errors.KeyUnavailableError, match=r"'kek-1\.key' is damaged"):
                await fresh.unwrap(under_1, context="p")
            assert await fresh.unwrap(under_2, context="p") == b"2" * 32
            assert (await fresh.wrap(b"n" * 32, context="q")).kek_id == "kek-2.key"
    assert [r.getMessage() for r in caplog.records] == [
        "key file kek-1.key is damaged; skipped"
    ]  # once, not at every use
    assert secret[:7].hex() not in caplog.text
    # A process that loaded it before the damage goes on with its copy.
    assert await keys.unwrap(under_1, context="p") == b"1" * 32
    # The newest damaged: nothing is wrapped (not even under an older KEK); unwraps go on.
    (tmp_path / "keys" / "kek-3.key").write_bytes(b"short")
    clock.now += LISTING_FRESH_S
    with pytest.raises(errors.KeyUnavailableError, match=r"kek-3\.key is damaged"):
        await fresh.wrap(b"n" * 32, context="q")
    assert await fresh.unwrap(under_2, context="p") == b"2" * 32
    # Restored from the escrow copy: back in use without a restart.
    (tmp_path / "keys" / "kek-1.key").write_bytes(secret)
    assert await fresh.unwrap(under_1, context="p") == b"1" * 32


async def test_maintenance_never_creates_key_material(tmp_path):
    for folder in (tmp_path / "missing", tmp_path / "empty"):
        if folder.name == "empty":
            folder.mkdir()
        keys = LocalKeyProvider(folder, create=False)
        with pytest.raises(errors.KeyUnavailableError, match="holds no key-encryption key"):
            await keys.current_kek_id()
        with pytest.raises(errors.KeyUnavailableError):
            await keys.wrap(b"k" * 32, context="p")
        assert not list(tmp_path.rglob("kek-*"))
    # The service's first start creates kek-1; a later empty folder is never refilled.
    service = LocalKeyProvider(tmp_path / "empty")
    assert await service.current_kek_id() == "kek-1.key"
    (tmp_path / "empty" / "kek-1.key").unlink()
    with pytest.raises(errors.KeyUnavailableError):
        await service.wrap(b"k" * 32, context="p")
    assert not list(tmp_path.rglob("kek-*"))


class _StalledWriter(fakes.MemoryDataKeyStore):
    """Keys, and a process stalled since before the new KEK storing its key at one moment."""

    def __init__(self, stalled: tuple[str, WrappedKey], at_count: int) -> None:
        super().__init__()
        self._stalled, self._at, self.counts = stalled, at_count, 0

    async def count_by_kek(self) -> dict[str, int]:
        self.counts += 1
        if self.counts == self._at:
            await self.put_if_absent(*self._stalled)
        return await super().count_by_kek()


async def test_retire_puts_the_kek_back_when_a_key_lands_under_it_meanwhile(tmp_path):
    keys = LocalKeyProvider(tmp_path / "keys")
    stalled = await keys.wrap(b"s" * 32, context="p-stalled")
    store = _StalledWriter(("p-stalled", stalled), at_count=2)  # just after the move
    await keys.new_kek()
    report = await retire_kek(KeyStores(keys, keys, store), "kek-1.key")
    assert (report.retired, report.still_wrapped) == (False, 1)
    assert (tmp_path / "keys" / "kek-1.key").exists()
    assert not (tmp_path / "keys" / "retired" / "kek-1.key").exists()
    assert await keys.unwrap(await store.get("p-stalled"), context="p-stalled") == b"s" * 32


# KMS: one key, one id.


def _kms(moto_server: MotoServer) -> tuple[Any, str, str]:
    kms: Any = moto_server.client("kms")
    meta = kms.create_key()["KeyMetadata"]
    return kms, meta["KeyId"], meta["Arn"]


async def test_kms_records_the_key_arn_whatever_the_settings_spell(moto_server):
    kms, key_id, arn = _kms(moto_server)
    alias = f"alias/novamind-{key_id[:8]}"
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    alias_arn = arn.split(":key/")[0] + ":" + alias
    for spelling in (key_id, arn, alias, alias_arn):
        keys = KmsKeyProvider(kms, spelling)
        assert await keys.current_kek_id() == arn, spelling
        wrapped = await keys.wrap(b"k" * 32, context="p")
        assert wrapped.kek_id == arn, spelling
        assert await keys.unwrap(wrapped, context="p") == b"k" * 32


async def test_kms_follows_a_repointed_alias_within_its_ttl(moto_server):
    kms, key_a, arn_a = _kms(moto_server)
    _, key_b, arn_b = _kms(moto_server)
    alias = f"alias/novamind-{key_a[:8]}"
    kms.create_alias(AliasName=alias, TargetKeyId=key_a)
    now = [0.0]
    keys = KmsKeyProvider(kms, alias, resolve_ttl_s=60.0, clock=lambda: now[0])
    assert await keys.current_kek_id() == arn_a
    kms.update_alias(AliasName=alias, TargetKeyId=key_b)
    now[0] = 59.0
    assert await keys.current_kek_id() == arn_a  # kept for the TTL
    now[0] = 60.0
    assert await keys.current_kek_id() == arn_b
    assert (await keys.wrap(b"k" * 32, context="p")).kek_id == arn_b

    class Propagating:
        """Where Encrypt runs, the alias still names the old key (it propagates slowly)."""

        def __getattr__(self, name: str) -> Any:
            return getattr(kms, name)

        def encrypt(self, **call: Any) -> Any:
            return kms.encrypt(**{**call, "KeyId": key_a})

    lagging = KmsKeyProvider(Propagating(), alias, clock=lambda: now[0])
    assert await lagging.current_kek_id() == arn_b
    assert (await lagging.wrap(b"k" * 32, context="p")).kek_id == arn_a
    assert await lagging.current_kek_id() == arn_b  # Encrypt's answer is not "current"


async def test_kms_retire_compares_keys_not_spellings(moto_server):
    kms, key_a, arn_a = _kms(moto_server)
    _, key_b, arn_b = _kms(moto_server)
    store = fakes.MemoryDataKeyStore()
    old = KmsKeyProvider(kms, key_a)
    await _keys(old, store, 3)  # recorded under key A's ARN
    # Rows written before ARNs were recorded: the configured spelling.
    legacy = await old.wrap(b"l" * 32, context="p-legacy")
    await store.put_if_absent("p-legacy", WrappedKey(key_a, legacy.blob))
    aliased = await old.wrap(b"a" * 32, context="p-alias")
    await store.put_if_absent("p-alias", WrappedKey("alias/data-keys", aliased.blob))
    stores = KeyStores(KmsKeyProvider(kms, key_b), None, store)  # now configured: key B
    for current in (arn_b, key_b):
        with pytest.raises(errors.InvalidInputError, match="current"):
            await retire_kek(stores, current)
    with pytest.raises(errors.NotFoundError):
        await retire_kek(stores, "alias/typo")
    for spelling in (key_a, arn_a):  # either way, every row of key A is counted
        report = await retire_kek(stores, spelling)
        assert (report.kek_id, report.still_wrapped, report.unsure) == (arn_a, 4, 1), spelling
        assert report.others == {arn_a: 3, key_a: 1, "alias/data-keys": 1}
    done = await rewrap_data_keys(stores.keys, store)
    assert (done.rewrapped, done.remaining) == (5, {})
    assert await store.count_by_kek() == {arn_b: 5}
    report = await retire_kek(stores, arn_a)
    assert (report.still_wrapped, report.unsure, report.others) == (0, 0, {})


async def test_unwraps_outlive_a_folder_that_cannot_be_listed_or_read(
    tmp_path, monkeypatch, caplog
):
    clock = _Clock()
    keys = LocalKeyProvider(tmp_path / "keys", clock=clock)
    wrapped = await keys.wrap(b"k" * 32, context="p")
    listdir = os.listdir

    def refuse(code: int) -> Callable[[object], list[str]]:
        def listing(_: object) -> list[str]:
            raise OSError(code, os.strerror(code))

        return listing

    # Out of descriptors or refused: the KEK held still opens its keys (logged once).
    with caplog.at_level(logging.ERROR, logger="novamind.keys"):
        for code in (errno.EMFILE, errno.EMFILE, errno.EACCES):
            clock.now += LISTING_FRESH_S
            monkeypatch.setattr(os, "listdir", refuse(code))
            assert await keys.unwrap(wrapped, context="p") == b"k" * 32
    assert len(caplog.records) == 2 and "EMFILE" in caplog.records[0].getMessage()
    # Nothing held: a clear error, never a bare OSError (500).
    monkeypatch.setattr(os, "listdir", refuse(errno.EACCES))
    with pytest.raises(errors.KeyUnavailableError, match="EACCES"):
        await LocalKeyProvider(tmp_path / "keys", create=False).unwrap(wrapped, context="p")
    monkeypatch.setattr(os, "listdir", refuse(errno.EIO))
    with pytest.raises(errors.StorageUnavailableError):
        await LocalKeyProvider(tmp_path / "keys", create=False).unwrap(wrapped, context="p")
    monkeypatch.setattr(os, "listdir", listdir)
    # A new newest KEK that cannot be read just now is not "damaged": retried, then used.
    (tmp_path / "keys" / "kek-2.key").write_bytes(os.urandom(32))
    read_bytes = Path.read_bytes

    def busy(self: Path) -> bytes:
        if self.name == "kek-2.key":
            raise OSError(errno.EMFILE, "Too many open files")
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", busy)
    clock.now += LISTING_FRESH_S
    caplog.clear()
    with pytest.raises(errors.KeyUnavailableError, match=r"cannot be read now \(EMFILE\)"):
        await keys.wrap(b"n" * 32, context="q")
    assert not [r for r in caplog.records if "damaged" in r.getMessage()]
    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    clock.now += LISTING_FRESH_S
    assert (await keys.wrap(b"n" * 32, context="q")).kek_id == "kek-2.key"


async def test_concurrent_unwraps_share_one_listing(tmp_path, monkeypatch):
    keys = LocalKeyProvider(tmp_path / "keys")
    wrapped = [await keys.wrap(b"k" * 32, context=f"p{i}") for i in range(200)]
    listings = 0
    listdir = os.listdir

    def counted(path: object) -> list[str]:
        nonlocal listings
        listings += 1
        return listdir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "listdir", counted)
    fresh = LocalKeyProvider(tmp_path / "keys")
    opened = await asyncio.gather(
        *(fresh.unwrap(w, context=f"p{i}") for i, w in enumerate(wrapped))
    )
    assert opened == [b"k" * 32] * 200
    assert listings <= 3  # the first start's look, then one listing for all
