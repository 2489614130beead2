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

from twin import ports
from twin.service.erasure import Eraser

__all__ = ["apply_erasure_ledger"]


async def apply_erasure_ledger(
    ledger: ports.ErasureLedger,
    snapshot: ports.DatabaseSnapshot,
    index: ports.TwinIndex,
    eraser: Eraser,
) -> int:
    """Erase again each ledger patient who has a data key or whose erasure is incomplete.

    Each is erased from every registered place (:class:`twin.service.erasure.Eraser`): a
    patient whose erasure stopped half-way (the ledger written, a crash or a failing place
    before the rest, even after the data key was destroyed) is completed the same way, and
    marked complete. Idempotent; costs one listing of the keyed patients.

    Returns:
        How many patients were erased again.
    """
    erased = await ledger.erased()
    if not erased:
        return 0
    unfinished = set(await ledger.incomplete())
    revived = sorted((set(erased) & set(await snapshot.patient_ids())) | unfinished)
    # An erasure that stopped after the key was shredded leaves its index entry (plain text):
    # one search per thousand ledger entries finds those.
    for start in range(0, len(erased), 1000):
        chunk = erased[start : start + 1000]
        for entry in await index.search(patient_ids=chunk, limit=len(chunk)):
            await index.delete(entry.patient_id)
    for patient_id in revived:
        await eraser.erase(patient_id, record=False)
    return len(revived)
