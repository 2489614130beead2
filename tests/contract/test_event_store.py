"""EventStore contract: ordered, idempotent, atomic, durable."""

import pytest

from twin import errors
from twin.domain import events as E
from twin.ports import NewEvent

PATIENT = "patient-0001"


def new(key: str, day: float, payload: E.Payload | None = None) -> NewEvent:
    return NewEvent(key, day, payload or E.Phq9(12))


async def test_appends_get_consecutive_sequence_numbers_and_read_back(event_store):
    payloads = [
        E.Phq9(14, (2, 2, 2, 2, 2, 1, 1, 1, 1)),
        E.Prescription("sertraline", 50.0),
        E.Steps(6000, 14.0),
    ]
    results = await event_store.append(
        PATIENT, [new(f"k{i}", i, p) for i, p in enumerate(payloads)]
    )
    assert [(r.seq, r.duplicate) for r in results] == [(1, False), (2, False), (3, False)]
    log = await event_store.read(PATIENT)
    assert [e.payload for e in log] == payloads
    assert [e.seq for e in log] == [1, 2, 3]
    assert [e.day for e in log] == [0.0, 1.0, 2.0]
    assert await event_store.last_seq(PATIENT) == 3
    assert [e.seq for e in await event_store.read(PATIENT, after_seq=2)] == [3]


async def test_a_retried_key_returns_the_original_sequence_and_appends_nothing(event_store):
    await event_store.append(PATIENT, [new("a", 0.0), new("b", 1.0)])
    retried = await event_store.append(PATIENT, [new("b", 1.0), new("c", 2.0)])
    assert [(r.seq, r.duplicate) for r in retried] == [(2, True), (3, False)]
    assert await event_store.last_seq(PATIENT) == 3
    again = await event_store.append(PATIENT, [new("c", 2.0)])
    assert again[0].duplicate and again[0].seq == 3


async def test_a_key_repeated_inside_one_batch_applies_once(event_store):
    results = await event_store.append(PATIENT, [new("x", 0.0), new("x", 0.0)])
    assert [(r.seq, r.duplicate) for r in results] == [(1, False), (1, True)]
    assert await event_store.last_seq(PATIENT) == 1


async def test_an_event_older_than_the_log_refuses_the_whole_batch(event_store):
    await event_store.append(PATIENT, [new("a", 5.0)])
    with pytest.raises(errors.EventOrderError):
        await event_store.append(PATIENT, [new("b", 6.0), new("c", 4.0)])
    assert await event_store.last_seq(PATIENT) == 1


@pytest.mark.parametrize("key", ["", "x" * 129, "tab\there", 17])
async def test_bad_idempotency_keys_are_refused(event_store, key):
    with pytest.raises(errors.ObservationRangeError, match="idempotency_key"):
        await event_store.append(PATIENT, [NewEvent(key, 0.0, E.Gad7(3))])


async def test_patients_are_isolated(event_store):
    await event_store.append("a", [new("k", 0.0)])
    await event_store.append("b", [new("k", 0.0), new("k2", 1.0)])
    assert await event_store.last_seq("a") == 1
    assert await event_store.last_seq("b") == 2
    assert await event_store.read("nobody") == []


async def test_append_many_applies_each_batch_by_the_rules_of_append(event_store):
    await event_store.append("b", [new("b1", 5.0)])
    await event_store.append("c", [new("c1", 1.0)])
    results = await event_store.append_many(
        [
            ("a", [new("a1", 0.0), new("a2", 1.0), new("a2", 1.0)]),
            ("b", [new("b2", 6.0), new("b3", 4.0)]),  # older than b's log: refused whole
            ("c", [new("c1", 1.0), new("c2", 3.0)]),  # c1 is a retry
            ("d", []),
        ]
    )
    a, b, c, d = results
    assert [(r.seq, r.duplicate) for r in a] == [(1, False), (2, False), (2, True)]
    assert isinstance(b, errors.EventOrderError) and b.event_day == 4.0
    assert [(r.seq, r.duplicate) for r in c] == [(1, True), (2, False)]
    assert d == []
    assert [e.day for e in await event_store.read("a")] == [0.0, 1.0]
    assert [e.seq for e in await event_store.read("b")] == [1]  # nothing of the refused batch
    assert [e.day for e in await event_store.read("c")] == [1.0, 3.0]
    # Each batch is appended after the log's head, like append's: sequence numbers go on.
    (more,) = await event_store.append_many([("a", [new("a3", 2.0)])])
    assert [(r.seq, r.duplicate) for r in more] == [(3, False)]
    assert await event_store.append_many([]) == []


async def test_append_many_refuses_a_patient_named_twice_and_writes_nothing(event_store):
    with pytest.raises(errors.InvalidInputError, match="one batch per patient"):
        await event_store.append_many([("a", [new("k", 0.0)]), ("a", [new("k2", 1.0)])])
    assert await event_store.last_seq("a") == 0
    with pytest.raises(errors.ObservationRangeError, match="idempotency_key"):
        await event_store.append_many([("a", [new("k", 0.0)]), ("b", [new("", 1.0)])])
    assert await event_store.last_seq("a") == 0


@pytest.mark.parametrize("day", [-1.0, float("nan"), float("inf"), 36_525.5, 999_999.0])
async def test_a_day_off_the_time_axis_is_refused_before_anything_is_written(event_store, day):
    with pytest.raises(errors.ObservationRangeError, match="day"):
        await event_store.append(PATIENT, [new("ok", 1.0), new("bad", day)])
    with pytest.raises(errors.ObservationRangeError, match="day"):
        await event_store.append_many([("a", [new("k", 0.0)]), ("b", [new("k", day)])])
    assert await event_store.last_seq(PATIENT) == await event_store.last_seq("a") == 0


async def test_an_event_too_far_after_the_latest_refuses_its_batch_and_no_other(event_store):
    # One event ten years and more after the last would make the twin advance through every
    # day between (and a new patient's first event counts from day 0).
    with pytest.raises(errors.EventGapError):
        await event_store.append(PATIENT, [new("far", 3_653.5)])
    await event_store.append(PATIENT, [new("a", 3_653.0)])
    results = await event_store.append_many(
        [(PATIENT, [new("b", 3_653.0 + 3_654.0)]), ("other", [new("c", 10.0)])]
    )
    assert isinstance(results[0], errors.EventGapError)
    assert "check the time axis" in str(results[0])
    assert [r.seq for r in results[1]] == [1]
    assert await event_store.last_seq(PATIENT) == 1


async def test_forget_removes_every_event_and_key_of_one_patient_and_no_other(event_store):
    await event_store.append(PATIENT, [new("MRN-77/a", 0.0), new("MRN-77/b", 1.0)])
    await event_store.append("other", [new("o", 0.0)])
    assert await event_store.forget(PATIENT) == 2
    assert await event_store.read(PATIENT) == []
    assert await event_store.last_seq(PATIENT) == 0
    assert await event_store.forget(PATIENT) == 0  # idempotent
    assert [e.seq for e in await event_store.read("other")] == [1]
    # The keys are gone with the events: the same key is new again, not a duplicate.
    again = await event_store.append(PATIENT, [new("MRN-77/a", 0.0)])
    assert (again[0].seq, again[0].duplicate) == (1, False)
