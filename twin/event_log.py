"""The event log's rules, which every :class:`twin.ports.EventStore` adapter calls.

An adapter only stores what these rules decide: which events of a batch are new, their
sequence numbers, and the sealed form of their payloads. The rules live once, here, so that
every store (the SQLite and PostgreSQL adapters, the in-memory fake) appends by the same ones.

- :func:`plan_append`: the rules of one append (idempotency keys, order, gaps, sequence).
- :func:`check_batches` and :func:`append_each`: the rules of :meth:`EventStore.append_many`.
- :func:`seal_event` and :func:`open_event`: the stored form of an event payload.
- :func:`check_idempotency_key` and :func:`check_day`: the checks of one event's key and time.

This module sits beside :mod:`twin.ports`, not in :mod:`twin.domain`: it builds the ports'
value types, and the domain layer may not import the ports (they name the model's prior sets).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from twin import errors
from twin.domain import codec, events
from twin.domain.events import MAX_SEQ
from twin.ports import AppendRefusal, AppendResult, EventStore, NewEvent, Sealer

__all__ = [
    "MAX_SEQ",
    "PlannedEvent",
    "append_each",
    "check_batches",
    "check_day",
    "check_idempotency_key",
    "open_event",
    "plan_append",
    "seal_event",
]


@dataclass(frozen=True, slots=True)
class PlannedEvent:
    """An event an append will write: its new sequence number and idempotency key."""

    seq: int
    idempotency_key: str
    event: NewEvent


def check_idempotency_key(key: object) -> str:
    """Validate an idempotency key: a string of 1..128 printable characters."""
    if not isinstance(key, str) or not 1 <= len(key) <= 128 or not key.isprintable():
        raise errors.ObservationRangeError("idempotency_key", "<invalid>", "1..128 printable chars")
    return key


def check_day(day: float) -> float:
    """``day`` if it lies on a twin's time axis (0 to ``MAX_DAY`` days), else an error.

    The axis is :data:`twin.domain.events.MAX_DAY` days long.

    Raises:
        ObservationRangeError: Outside the axis, or not a number.
    """
    if not isinstance(day, int | float) or not 0.0 <= day <= events.MAX_DAY:  # also refuses NaN
        raise errors.ObservationRangeError(
            "day", day, f"0 to {events.MAX_DAY:g} days since the origin"
        )
    return day


def plan_append(
    batch: Sequence[NewEvent], *, known: dict[str, int], head_seq: int, head_day: float
) -> tuple[list[AppendResult], list[PlannedEvent]]:
    """The rules of an append, shared by every EventStore adapter.

    Keys already ``known`` (key -> seq) return their original sequence as duplicates, a key
    repeated inside the batch applies once, and new events take consecutive sequence numbers
    after ``head_seq``; an event older than the log's newest, or more than
    :data:`twin.domain.events.MAX_EVENT_GAP_DAYS` after it (after day 0 for a new patient),
    refuses the whole batch.

    Raises:
        ObservationRangeError: An invalid idempotency key, or a day outside 0..``MAX_DAY``.
        EventOrderError: An event older than ``head_day`` or than an earlier one in the batch.
        EventGapError: An event too far after the latest one.
    """
    seen = dict(known)
    results: list[AppendResult] = []
    planned: list[PlannedEvent] = []
    seq, day = head_seq, head_day
    for item in batch:
        key = check_idempotency_key(item.idempotency_key)
        if key in seen:
            results.append(AppendResult(seen[key], True))
            continue
        check_day(item.day)
        if item.day < day:
            raise errors.EventOrderError(item.day, day)
        if item.day - day > events.MAX_EVENT_GAP_DAYS:
            raise errors.EventGapError(item.day, day, events.MAX_EVENT_GAP_DAYS)
        seq, day = seq + 1, item.day
        seen[key] = seq
        planned.append(PlannedEvent(seq, key, item))
        results.append(AppendResult(seq, False))
    return results, planned


def check_batches(batches: Sequence[tuple[str, Sequence[NewEvent]]]) -> None:
    """Refuse an :meth:`EventStore.append_many` call that cannot be right as a whole.

    A call naming a patient twice, with a bad key or a day off the time axis is checked
    before anything is written: such a call appends nothing at all.
    """
    if len({patient_id for patient_id, _ in batches}) != len(batches):
        raise errors.InvalidInputError("append_many: one batch per patient")
    for _, batch in batches:
        for item in batch:
            check_idempotency_key(item.idempotency_key)
            check_day(item.day)


async def append_each(
    store: EventStore, batches: Sequence[tuple[str, Sequence[NewEvent]]]
) -> list[list[AppendResult] | AppendRefusal]:
    """:meth:`EventStore.append_many` for stores that commit each patient's batch alone."""
    check_batches(batches)
    results: list[list[AppendResult] | AppendRefusal] = []
    for patient_id, batch in batches:
        try:
            results.append(await store.append(patient_id, batch))
        except (errors.EventOrderError, errors.KeyAccessError) as exc:
            results.append(exc)
    return results


async def seal_event(sealer: Sealer, patient_id: str, planned: PlannedEvent) -> bytes:
    """The stored form of an event payload: its JSON, sealed to (patient, "event", seq)."""
    plain = json.dumps(codec.encode(planned.event.payload), sort_keys=True).encode()
    return await sealer.seal(patient_id, kind="event", version=planned.seq, plaintext=plain)


async def open_event(
    sealer: Sealer, patient_id: str, seq: int, day: float, sealed: bytes
) -> events.Event:
    """Open a stored event payload (the inverse of :func:`seal_event`).

    The seal authenticates it; it is not judged again by today's rules (``codec.decode``).
    """
    plain = await sealer.open(patient_id, kind="event", version=seq, sealed=sealed)
    return events.Event(seq, day, codec.decode(json.loads(plain), stored=True))
