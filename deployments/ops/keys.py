"""Key-encryption key (KEK) rotation, retirement and destruction (``novamind keys``).

The order, local key folder (docs/operations.md §7):

1. :func:`new_kek` creates ``kek-<n+1>.key``; running services wrap new keys under it from their
   next wrap. The key folder is escrowed now, before anything is re-wrapped under it: a folder
   lost before its escrow copy holds the new KEK would otherwise take every re-wrapped key with
   it.
2. :func:`rotate` re-wraps every data key under the current KEK
   (:func:`twin.service.keys.rewrap_data_keys`); run again until nothing is left.
3. :func:`retire` moves the old KEK to ``keys/retired/`` once no data key is wrapped under it: no
   process loads it any more, yet a backup written before the last re-wrap pass finished (its
   archive key and data keys wrapped under it) can still be restored by moving it back.
4. :func:`destroy`, later and separately, deletes a retired KEK once no data key is wrapped under
   it then either (the count taken at retirement is no barrier against a process stalled since
   before the new KEK). It deletes this folder's copy only: escrow copies are deleted apart.

Under KMS, KMS rotates the key material behind one key itself; a new key comes from a new
``NOVAMIND_KMS_KEY_ID``. Key ids are compared as the ARNs KMS resolves them to. :func:`retire`
only counts (the key is disabled and deleted in KMS), and there is nothing to create or destroy
here.

None of these commands creates key material but :func:`new_kek`: the key folder is opened with
``create=False`` (:func:`deployments.stores.open_key_stores`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from deployments.stores import KeyStores, open_key_stores
from storage.kms import KmsKeyProvider
from storage.local.keys import RETIRED, KekFolder
from twin import errors
from twin.service.keys import RewrapProgress, RewrapReport, rewrap_data_keys
from twin.settings import TwinSettings

__all__ = [
    "DestroyReport",
    "KeyStatus",
    "NewKek",
    "RetireReport",
    "destroy",
    "key_status",
    "new_kek",
    "retire",
    "retire_kek",
    "rotate",
]

_KMS_NEW = (
    "KMS rotates the key material behind a key itself; to move to a new KMS key, set "
    "NOVAMIND_KMS_KEY_ID to it on every service, then run `novamind keys rotate`"
)


@dataclass(frozen=True, slots=True)
class NewKek:
    """A KEK created: its id and the folder to escrow before ``keys rotate``."""

    kek_id: str
    folder: str


@dataclass(frozen=True, slots=True)
class RetireReport:
    """A retirement.

    Attributes:
        kek_id: The KEK named (under KMS: the key's ARN when KMS knows it).
        still_wrapped: Data keys wrapped under it (nothing was retired while any are).
        retired: Whether it was moved to ``retired/`` (never under KMS).
        kept_at: Where the retired file is kept (``None`` when not retired).
        kms: Whether the key provider is KMS (retirement is then done in KMS).
        others: Data keys under every KEK id other than the current one (it included).
        unsure: Under KMS, data keys recorded under an alias: which key wrapped them is not
            known from the id, so the all-clear waits until they are re-wrapped.
    """

    kek_id: str
    still_wrapped: int
    retired: bool
    kept_at: str | None
    kms: bool
    others: dict[str, int] = field(default_factory=dict)
    unsure: int = 0


@dataclass(frozen=True, slots=True)
class DestroyReport:
    """A destruction: the KEK, and the data keys found under it (destroyed only at 0)."""

    kek_id: str
    still_wrapped: int
    destroyed: bool


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """The current KEK, the data keys under each KEK id, and (local) the key folder."""

    current: str
    counts: dict[str, int]
    folder: KekFolder | None


def _local(stores: KeyStores, what: str) -> None:
    if stores.local is None:
        raise errors.ConfigurationError(f"{what} is for the local key folder only: {_KMS_NEW}")


async def new_kek(settings: TwinSettings) -> NewKek:
    """Create a new local KEK (it becomes current for every process at its next wrap).

    Raises:
        ConfigurationError: Under KMS; or the folder holds no KEK while data keys are stored
            (a wrong data directory, or the key volume not mounted).
    """
    async with open_key_stores(settings) as stores:
        _local(stores, "`keys new-kek`")
        assert stores.local is not None
        folder = stores.local.directory
        try:
            holds_kek = bool((await stores.local.folder()).live)
        except errors.KeyUnavailableError:  # missing, or holds no KEK
            holds_kek = False
        stored = sum((await stores.data_keys.count_by_kek()).values())
        if stored and not holds_kek:
            raise errors.ConfigurationError(
                f"the key folder {folder} holds no key-encryption key, yet {stored} data key(s) "
                "are stored: a wrong data directory, or the key volume not mounted? Nothing was "
                "created"
            )
        return NewKek(await stores.local.new_kek(), str(folder))


async def rotate(
    settings: TwinSettings,
    *,
    batch: int = 200,
    concurrency: int = 8,
    progress: Callable[[RewrapProgress], None] | None = None,
) -> RewrapReport:
    """Re-wrap every data key under the current KEK (it never creates one)."""
    async with open_key_stores(settings) as stores:
        return await rewrap_data_keys(
            stores.keys, stores.data_keys, batch=batch, concurrency=concurrency, progress=progress
        )


async def key_status(settings: TwinSettings) -> KeyStatus:
    """The current KEK, the data keys under each KEK id, and the key folder's files."""
    async with open_key_stores(settings) as stores:
        folder = None if stores.local is None else await stores.local.folder()
        current = folder.current if folder is not None else await stores.keys.current_kek_id()
        return KeyStatus(current, await stores.data_keys.count_by_kek(), folder)


async def retire(settings: TwinSettings, kek_id: str) -> RetireReport:
    """Retire a local KEK once no data key is wrapped under it (under KMS: only count)."""
    async with open_key_stores(settings) as stores:
        return await retire_kek(stores, kek_id)


async def retire_kek(stores: KeyStores, kek_id: str) -> RetireReport:
    """:func:`retire` on open stores.

    The count is taken again after the KEK left the folder; a key wrapped under it in between
    (by a process stalled since before the new KEK) puts it back and refuses.

    Raises:
        InvalidInputError: ``kek_id`` is the current KEK, or not a KEK name.
        NotFoundError: ``kek_id`` names no KEK in the folder (under KMS: no key KMS knows, and
            no data key's).
    """
    if isinstance(stores.keys, KmsKeyProvider):
        return await _retire_kms(stores.keys, stores, kek_id)
    local = stores.local
    assert local is not None
    current = await local.current_kek_id()
    if kek_id == current:
        raise errors.InvalidInputError(
            f"{kek_id} is the current key-encryption key: create a new one first "
            "(`novamind keys new-kek`), escrow the key folder, then `novamind keys rotate`"
        )
    counts = await stores.data_keys.count_by_kek()
    others = {k: n for k, n in counts.items() if k != current}
    wrapped = counts.get(kek_id, 0)
    if wrapped:
        return RetireReport(kek_id, wrapped, False, None, False, others)
    await local.retire(kek_id)
    wrapped = (await stores.data_keys.count_by_kek()).get(kek_id, 0)
    if wrapped:
        await local.reinstate(kek_id)
        return RetireReport(kek_id, wrapped, False, None, False, others | {kek_id: wrapped})
    kept = str(local.directory / RETIRED / kek_id)
    return RetireReport(kek_id, 0, True, kept, False, others)


def _alias(kek_id: str) -> bool:
    return kek_id.startswith("alias/") or ":alias/" in kek_id


async def _retire_kms(kms: KmsKeyProvider, stores: KeyStores, kek_id: str) -> RetireReport:
    current = await kms.current_kek_id()
    counts = await stores.data_keys.count_by_kek()
    arn = await kms.describe(kek_id)
    if arn is None and kek_id not in counts:
        raise errors.NotFoundError(
            "KMS knows no such key and no data key is recorded under that id: check the id "
            "(`novamind keys status` lists them)"
        )
    target = arn or kek_id
    if target == current:
        raise errors.InvalidInputError(
            f"{target} is the current KMS key (NOVAMIND_KMS_KEY_ID): set the new key there and "
            "run `novamind keys rotate` first"
        )
    others = {k: n for k, n in counts.items() if k != current}
    under = unsure = 0
    for other, n in others.items():
        if other in (kek_id, target):
            under += n
        elif _alias(other):
            unsure += n  # an alias names whichever key it pointed at when the key was wrapped
        elif await kms.describe(other) == target:
            under += n  # the same key in another spelling (its bare key id)
    return RetireReport(target, under, False, None, True, others, unsure)


async def destroy(settings: TwinSettings, kek_id: str) -> DestroyReport:
    """Delete a retired local KEK for good, once no data key is wrapped under it now.

    Raises:
        ConfigurationError: Under KMS (keys are deleted in KMS).
        InvalidInputError: ``kek_id`` is still in the key folder (retire it first).
        NotFoundError: ``retired/`` holds no such KEK.
    """
    async with open_key_stores(settings) as stores:
        if stores.local is None:
            raise errors.ConfigurationError(
                "`keys destroy` is for the local key folder only: a KMS key is disabled, then "
                "its deletion scheduled, in KMS"
            )
        folder = await stores.local.folder()
        if kek_id not in folder.retired:
            if kek_id in folder.live:
                raise errors.InvalidInputError(
                    f"{kek_id} is in the key folder: `novamind keys retire {kek_id}` first"
                )
            raise errors.NotFoundError(f"no retired key-encryption key {kek_id!r:.80}")
        wrapped = (await stores.data_keys.count_by_kek()).get(kek_id, 0)
        if wrapped:
            return DestroyReport(kek_id, wrapped, False)
        await stores.local.destroy(kek_id)
        return DestroyReport(kek_id, 0, True)
