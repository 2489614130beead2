"""Erasure of a patient: one use case over the registry of every place patient data lives.

The composition root lists the places (:class:`Place`) in the order they are erased; the
:class:`Eraser` writes the erasure ledger first (so that no restore of a backup made before
can bring the patient back), then erases the patient from each place in turn. Each place's
``erase`` is idempotent, so an erasure that stopped half-way is completed by running it again
(the ledger names every patient whose erasure began, and marks those every place completed;
see :mod:`twin.service.erasure_ledger`).

A place that holds patient data and is not registered is a defect: the registry also names the
tables that hold none (:data:`TABLES_WITHOUT_PATIENT_DATA`), and a test compares both with the
database's schema.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from twin import errors, ports

__all__ = ["TABLES_WITHOUT_PATIENT_DATA", "Eraser", "Place"]

#: Relational tables that hold no patient data, and why (every other table must be a place's).
TABLES_WITHOUT_PATIENT_DATA: dict[str, str] = {
    "audit_log": "who did what to which opaque patient id: kept six years (HIPAA), no PHI",
    "audit_head": "the audit chain's head hash",
    "_yoyo_migration": "applied schema migrations",
    "_yoyo_log": "schema migration history",
    "_yoyo_version": "the migration tool's version",
    "yoyo_lock": "the migration lock",
}


@dataclass(frozen=True, slots=True)
class Place:
    """A place that holds patient data, and how one patient is erased from it.

    Attributes:
        name: Short name (reported per erasure).
        holds: What of the patient the place holds.
        tables: Relational tables whose patient rows this place removes or makes unreadable.
        erase: Removes the patient's data there (or destroys the key it is sealed under);
            idempotent; returns how many items it removed.
        reachable: Whether this process can reach the place (an operator's command cannot
            reach the twins in the service's memory). An erasure that skipped a place is not
            marked complete: the next ledger apply where it is reachable finishes it.
    """

    name: str
    holds: str
    tables: tuple[str, ...]
    erase: Callable[[str], Awaitable[int]]
    reachable: bool = True


class Eraser:
    """Erases patients from every registered place, ledger first.

    Args:
        ledger: The erasure ledger, kept apart from everything a restore brings back.
        places: Every place that holds patient data, in erasure order (the registry).
    """

    def __init__(self, ledger: ports.ErasureLedger, places: Sequence[Place]) -> None:
        names = [place.name for place in places]
        if len(set(names)) != len(names):
            raise ValueError(f"erasure places must have distinct names: {names}")
        self._ledger = ledger
        self._places = tuple(places)

    @property
    def places(self) -> tuple[Place, ...]:
        """The registry, in erasure order."""
        return self._places

    async def erase(self, patient_id: str, *, record: bool = True) -> dict[str, int]:
        """Erase the patient everywhere; returns the items removed per place.

        Args:
            patient_id: The opaque patient id.
            record: Write the ledger first (``False`` when completing an erasure the ledger
                already names).

        Raises:
            StorageUnavailableError: A place could not be erased; every other place was (the
                data key included), and the message names the ones that failed.
        """
        if record:
            await self._ledger.record(patient_id)
        removed: dict[str, int] = {}
        failed: list[str] = []
        skipped = False
        for place in self._places:
            if not place.reachable:
                removed[place.name], skipped = 0, True
                continue
            # One place failing must not keep the others (the data key last) from erasing.
            try:
                removed[place.name] = await place.erase(patient_id)
            except Exception as exc:
                failed.append(f"{place.name} ({type(exc).__name__})")
        if failed:
            # Not marked complete: the next ledger apply (every service start, every restore,
            # ``novamind erasures apply``, or the admin's DELETE again) redoes it.
            raise errors.StorageUnavailableError(
                f"erasure incomplete: {', '.join(failed)} could not be erased; the others were"
            )
        if not skipped:
            await self._ledger.complete(patient_id)
        return removed
