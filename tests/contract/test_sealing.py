"""Envelope encryption, key files and the data-key store (crypto-shredding, rotation)."""

import stat

import pytest

from storage.local import LocalKeyProvider
from storage.sealed import EnvelopeSealer
from storage.sqlite import SqliteDataKeyStore, SqliteEventStore
from twin import errors
from twin.domain import events as E
from twin.ports import NewEvent, WrappedKey
from twin.service.keys import rewrap_data_keys
from twin.testing import fakes

CANARY = b"Jane Q. Canary, born 1970-01-01"


async def test_the_memory_store_gives_an_erased_patient_no_key():
    """As the real stores do by reading the registry's tombstone (their own suites test it)."""
    store = fakes.MemoryDataKeyStore()
    kept = WrappedKey("kek-1.key", b"one")
    assert await store.put_if_absent("p", kept) == kept
    store.erased.update({"p", "q"})
    assert await store.put_if_absent("p", WrappedKey("kek-1.key", b"two")) == kept
    with pytest.raises(errors.KeyAccessError, match="erased"):
        await store.put_if_absent("q", kept)
    assert await store.get("q") is None


async def test_data_key_store_contract(data_key_store):
    first = WrappedKey("kek-1.key", b"one")
    assert await data_key_store.get("p") is None
    assert await data_key_store.put_if_absent("p", first) == first
    assert await data_key_store.put_if_absent("p", WrappedKey("kek-1.key", b"two")) == first
    # Compare-and-swap: only over the key that is stored.
    assert not await data_key_store.replace_if("p", WrappedKey("kek-1.key", b"two"), first)
    assert await data_key_store.replace_if("p", first, WrappedKey("kek-2.key", b"three"))
    assert (await data_key_store.get("p")).kek_id == "kek-2.key"
    assert not await data_key_store.replace_if("p", first, WrappedKey("kek-3.key", b"four"))
    assert await data_key_store.get("p") == WrappedKey("kek-2.key", b"three")
    assert await data_key_store.delete("p")
    assert not await data_key_store.delete("p")
    assert await data_key_store.get("p") is None


async def test_round_trip_and_binding_to_patient_kind_and_version(key_provider, data_key_store):
    sealer = EnvelopeSealer(key_provider, data_key_store)
    sealed = await sealer.seal("p1", kind="checkpoint", version=7, plaintext=CANARY)
    assert CANARY not in sealed
    assert await sealer.open("p1", kind="checkpoint", version=7, sealed=sealed) == CANARY
    await sealer.seal("p2", kind="checkpoint", version=7, plaintext=b"other")
    for patient, kind, version in (
        ("p2", "checkpoint", 7),
        ("p1", "event", 7),
        ("p1", "checkpoint", 8),
    ):
        with pytest.raises(errors.CheckpointCorruptError, match="integrity"):
            await sealer.open(patient, kind=kind, version=version, sealed=sealed)
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(errors.CheckpointCorruptError):
        await sealer.open("p1", kind="checkpoint", version=7, sealed=bytes(tampered))


async def test_shredding_makes_everything_unreadable_even_for_a_fresh_process(
    key_provider, data_key_store
):
    sealer = EnvelopeSealer(key_provider, data_key_store)
    sealed = await sealer.seal("p1", kind="checkpoint", version=1, plaintext=b"state")
    assert await sealer.shred("p1")
    for reader in (sealer, EnvelopeSealer(key_provider, data_key_store)):
        with pytest.raises(errors.KeyAccessError, match="erased"):
            await reader.open("p1", kind="checkpoint", version=1, sealed=sealed)


async def test_rotation_rewraps_without_touching_payloads(tmp_path, data_key_store):
    keys = LocalKeyProvider(tmp_path / "keys")
    sealer = EnvelopeSealer(keys, data_key_store)
    sealed = await sealer.seal("p1", kind="checkpoint", version=1, plaintext=b"state")
    before = await data_key_store.get("p1")
    new_kek = await keys.new_kek()
    first = await rewrap_data_keys(keys, data_key_store)
    assert (first.rewrapped, first.already_current, first.remaining) == (1, 0, {})
    after = await data_key_store.get("p1")
    assert after.kek_id == new_kek != before.kek_id
    again = await rewrap_data_keys(keys, data_key_store)
    assert (again.rewrapped, again.already_current) == (0, 1)
    fresh = EnvelopeSealer(LocalKeyProvider(tmp_path / "keys"), data_key_store)
    assert await fresh.open("p1", kind="checkpoint", version=1, sealed=sealed) == b"state"
    # The sealer's cached data key is the same key: it goes on sealing and opening.
    await keys.retire(before.kek_id)
    resealed = await sealer.seal("p1", kind="checkpoint", version=2, plaintext=b"later")
    assert await fresh.open("p1", kind="checkpoint", version=2, sealed=resealed) == b"later"


async def test_every_key_provider_binds_the_context(key_provider):
    wrapped = await key_provider.wrap(b"k" * 32, context="p1")
    assert wrapped.kek_id == await key_provider.current_kek_id()
    assert await key_provider.unwrap(wrapped, context="p1") == b"k" * 32
    # Another patient's key, or damaged bytes: stored but not opening, which is no erasure.
    with pytest.raises(errors.DataKeyDamagedError, match="no erasure took place"):
        await key_provider.unwrap(wrapped, context="p2")
    damaged = WrappedKey(wrapped.kek_id, wrapped.blob[:-1] + bytes([wrapped.blob[-1] ^ 1]))
    with pytest.raises(errors.DataKeyDamagedError):
        await key_provider.unwrap(damaged, context="p1")


async def test_key_files_are_private_and_contexts_are_bound(tmp_path):
    keys = LocalKeyProvider(tmp_path / "keys")
    wrapped = await keys.wrap(b"k" * 32, context="p1")
    mode = stat.S_IMODE((tmp_path / "keys" / wrapped.kek_id).stat().st_mode)
    assert mode == 0o600
    with pytest.raises(errors.DataKeyDamagedError):
        await keys.unwrap(wrapped, context="p2")
    with pytest.raises(errors.DataKeyDamagedError):
        await keys.unwrap(WrappedKey(wrapped.kek_id, wrapped.blob[:5]), context="p1")
    # A KEK not in the folder is unavailable (retry once it is back), never "erased".
    with pytest.raises(errors.KeyUnavailableError, match="not in the key folder"):
        await keys.unwrap(WrappedKey("kek-99.key", wrapped.blob), context="p1")


async def test_no_plaintext_in_the_sqlite_files(tmp_path, sqlite_db, key_provider):
    store = SqliteEventStore(sqlite_db, EnvelopeSealer(key_provider, SqliteDataKeyStore(sqlite_db)))
    await store.append("p1", [NewEvent("a", 0.0, E.Prescription("citalopram", 20.0))])
    assert (await store.read("p1"))[0].payload == E.Prescription("citalopram", 20.0)
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("novamind.db*"))
    assert b"citalopram" not in raw


async def test_events_survive_reopening_and_shredding_erases_the_log(tmp_path, key_provider):
    from storage.sqlite import SqliteDatabase

    db = await SqliteDatabase.open(tmp_path / "log.db")
    sealer = EnvelopeSealer(key_provider, SqliteDataKeyStore(db))
    await SqliteEventStore(db, sealer).append("p1", [NewEvent("a", 0.0, E.Gad7(8))])
    await db.close()
    db = await SqliteDatabase.open(tmp_path / "log.db")
    sealer = EnvelopeSealer(key_provider, SqliteDataKeyStore(db))
    store = SqliteEventStore(db, sealer)
    assert (await store.read("p1"))[0].payload == E.Gad7(8)
    await sealer.shred("p1")
    with pytest.raises(errors.KeyAccessError):
        await store.read("p1")
    await db.close()
