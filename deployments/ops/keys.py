"""Key-encryption key (KEK) rotation and retirement (``novamind keys``).

- :func:`rotate`: optionally create a new local KEK, then re-wrap every data key under the
  current KEK (:func:`twin.service.keys.rewrap_data_keys`). Under KMS a new key comes from a new
  ``NOVAMIND_KMS_KEY_ID`` (KMS rotates the material behind one key id itself).
- :func:`retire`: take an old local KEK out of use once no data key is wrapped under it. It is
  moved to ``keys/retired/`` by default: no process loads it any more (nothing can be wrapped or
  unwrapped under it), yet a backup written before the rotation (whose archive key and data
  keys it wrapped) can still be restored by moving it back. ``destroy`` deletes it: what makes
  the old KEK unusable for good (a suspected compromise, or once the last backup that needs it
  has aged out). Under KMS nothing is changed: the report says how many keys still use the old
  key id; the operator disables it and schedules its deletion in KMS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from deployments.stores import open_key_stores
from storage.local.keys import RETIRED
from twin import errors
from twin.service.keys import RewrapProgress, RewrapReport, rewrap_data_keys
from twin.settings import TwinSettings

__all__ = ["RetireReport", "RotateReport", "key_counts", "retire", "rotate"]


@dataclass(frozen=True, slots=True)
class RotateReport:
    """A rotation: the KEK created (if any) and the re-wrap's counts."""

    created: str | None
    rewrap: RewrapReport


@dataclass(frozen=True, slots=True)
class RetireReport:
    """A retirement.

    Attributes:
        kek_id: The KEK named.
        still_wrapped: Data keys wrapped under it (nothing was retired while any are).
        retired: Whether it was taken out of use (never under KMS).
        destroyed: Whether its file was deleted.
        kept_at: Where the retired file is kept (``None`` when destroyed or not retired).
        kms: Whether the key provider is KMS (retirement is then done in KMS).
    """

    kek_id: str
    still_wrapped: int
    retired: bool
    destroyed: bool
    kept_at: str | None
    kms: bool


async def rotate(
    settings: TwinSettings,
    *,
    new_kek: bool,
    batch: int = 200,
    concurrency: int = 8,
    progress: Callable[[RewrapProgress], None] | None = None,
) -> RotateReport:
    """Create a new local KEK when asked, then re-wrap every data key under the current KEK.

    Raises:
        ConfigurationError: ``new_kek`` under KMS.
    """
    async with open_key_stores(settings) as stores:
        created = None
        if new_kek:
            if stores.local is None:
                raise errors.ConfigurationError(
                    "--new-kek is for the local key folder only: KMS rotates the key material "
                    "behind a key id itself; to move to a new KMS key, set NOVAMIND_KMS_KEY_ID "
                    "to it (on every service first), then run `novamind keys rotate`"
                )
            created = await stores.local.rotate()
        report = await rewrap_data_keys(
            stores.keys, stores.data_keys, batch=batch, concurrency=concurrency, progress=progress
        )
        return RotateReport(created, report)


async def key_counts(settings: TwinSettings) -> tuple[str, dict[str, int]]:
    """The current KEK and the data keys under each KEK."""
    async with open_key_stores(settings) as stores:
        return await stores.keys.current_kek_id(), await stores.data_keys.count_by_kek()


async def retire(settings: TwinSettings, kek_id: str, *, destroy: bool = False) -> RetireReport:
    """Retire a local KEK once no data key is wrapped under it (under KMS: only count).

    The count is taken again after the KEK left the folder; a key wrapped under it in between
    (by a process stalled since before the rotation) puts it back and refuses.

    Raises:
        KeyAccessError: ``kek_id`` is the current KEK, or names no local KEK.
    """
    async with open_key_stores(settings) as stores:
        local = stores.local
        if kek_id == await stores.keys.current_kek_id():
            raise errors.KeyAccessError(
                f"{kek_id} is the current key-encryption key: "
                + (
                    "rotate to a new one first (`novamind keys rotate --new-kek`)"
                    if local is not None
                    else "set NOVAMIND_KMS_KEY_ID to the new key and run `novamind keys rotate`"
                )
            )
        wrapped = (await stores.data_keys.count_by_kek()).get(kek_id, 0)
        if local is None or wrapped:
            return RetireReport(kek_id, wrapped, False, False, None, local is None)
        await local.retire(kek_id)
        wrapped = (await stores.data_keys.count_by_kek()).get(kek_id, 0)
        if wrapped:
            await local.reinstate(kek_id)
            return RetireReport(kek_id, wrapped, False, False, None, False)
        if destroy:
            await local.retire(kek_id, destroy=True)
            return RetireReport(kek_id, 0, True, True, None, False)
        return RetireReport(kek_id, 0, True, False, str(local.directory / RETIRED / kek_id), False)
