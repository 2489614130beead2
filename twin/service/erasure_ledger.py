"""Applying the erasure ledger: erase again every patient it names who still has a data key.

Also every patient whose erasure never completed (a place failed after the data key was
destroyed): the ledger marks an erasure complete only when every place succeeded.

A database restored from a backup or to a point in time holds the wrapped data keys and
registry rows of patients erased since; the erasure ledger (``ports.ErasureLedger``) is kept
apart from both and names them. A write that raced an erasure (it passed its access check just
before) can also have sealed something under a fresh key. Every restore (``novamind restore``),
every start of the API's services, and ``novamind erasures apply`` (after a point-in-time
restore of the database) erase each named patient who has a data key again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from twin import errors, ports
from twin.service.erasure import Eraser

__all__ = ["LedgerApplied", "ScratchErasureLedger", "apply_erasure_ledger"]

_LOG = logging.getLogger("novamind.erasure")


class ScratchErasureLedger:
    """Another environment's erasure ledger, read; what is written stays here, in memory.

    For a copy of an environment that must never change the original (a disaster-recovery
    drill restores a backup into a scratch environment): the copy erases again every patient
    the original's ledger names, but its erasures begin and complete in the copy alone. An
    erasure the original has not completed stays incomplete there, whatever the copy did.

    Args:
        original: The ledger read (never written through this one).
    """

    def __init__(self, original: ports.ErasureLedger) -> None:
        self._original = original
        self._recorded: set[str] = set()
        self._completed: set[str] = set()

    async def record(self, patient_id: str) -> None:
        """Note the patient as erased in the copy."""
        self._recorded.add(patient_id)

    async def erased(self) -> list[str]:
        """The original's erased patients and those recorded in the copy, sorted."""
        return sorted(set(await self._original.erased()) | self._recorded)

    async def complete(self, patient_id: str) -> None:
        """Note that the copy erased the patient everywhere (the original is not told)."""
        self._completed.add(patient_id)

    async def incomplete(self) -> list[str]:
        """Erasures the original or the copy began and the copy has not completed, sorted."""
        begun = set(await self._original.incomplete()) | self._recorded
        return sorted(begun - self._completed)


@dataclass(frozen=True, slots=True)
class LedgerApplied:
    """What applying the ledger did.

    Attributes:
        revived: Ledger patients who had a data key (a restore revived them, or a write raced
            the erasure) and were erased again.
        completed: Erasures that had not completed and now have.
        failed: Patients whose erasure failed again (a place is still failing); each stays
            incomplete in the ledger and is retried by the next apply.
    """

    revived: int
    completed: int
    failed: tuple[str, ...]


async def apply_erasure_ledger(
    ledger: ports.ErasureLedger,
    snapshot: ports.DatabaseSnapshot,
    index: ports.TwinIndex,
    eraser: Eraser,
    *,
    incomplete: bool = True,
) -> LedgerApplied:
    """Erase again each ledger patient who has a data key, and complete unfinished erasures.

    Each is erased from every registered place (:class:`twin.service.erasure.Eraser`) and
    marked complete when every place succeeded. One patient failing stops no other.

    Args:
        ledger: The erasure ledger.
        snapshot: The relational store (who has a data key).
        index: The twin index (entries an interrupted erasure left in plain text).
        eraser: Erasure over every place.
        incomplete: Also complete erasures that stopped half-way (after the data key was
            destroyed nothing sealed is readable; what is left is derived data).

    Raises:
        StorageUnavailableError: A patient who has a data key could not be erased again: the
            service must not serve them (the others were done).
    """
    erased = await ledger.erased()
    if not erased:
        return LedgerApplied(0, 0, ())
    keyed = set(erased) & set(await snapshot.patient_ids())
    unfinished = set(await ledger.incomplete()) - keyed if incomplete else set()
    # An erasure that stopped after the key was shredded leaves its index entry (plain text):
    # one search per thousand ledger entries finds those.
    for start in range(0, len(erased), 1000):
        chunk = erased[start : start + 1000]
        for entry in await index.search(patient_ids=chunk, limit=len(chunk)):
            await index.delete(entry.patient_id)
    failed: list[str] = []
    for patient_id in sorted(keyed | unfinished):
        try:
            await eraser.erase(patient_id, record=False)
        except errors.TwinError as exc:
            _LOG.warning("erasure of a ledger patient failed again: %s", exc)
            failed.append(patient_id)
    if keyed & set(failed):
        raise errors.StorageUnavailableError(
            f"{len(keyed & set(failed))} patient(s) the ledger names still have a data key and "
            "could not be erased again; retry"
        )
    # Completed: those the ledger now marks complete (an erasure that skipped a place this
    # process cannot reach stays incomplete, and is not counted).
    still = set(await ledger.incomplete())
    return LedgerApplied(len(keyed), len(unfinished - still), tuple(sorted(set(failed))))
