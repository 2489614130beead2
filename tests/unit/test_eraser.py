"""The Eraser: ledger first, every place in order, and one failing place stops no other."""

import pytest

from twin import errors
from twin.service.erasure import Eraser, Place
from twin.testing import fakes

_Ledger = fakes.MemoryErasureLedger


async def test_a_failing_place_does_not_keep_the_data_key_from_being_destroyed():
    done: list[str] = []

    def place(name: str, fail: bool = False) -> Place:
        async def erase(pid: str) -> int:
            if fail:
                raise OSError("bucket unreachable")
            done.append(name)
            return 1

        return Place(name, name, (), erase)

    ledger = _Ledger()
    eraser = Eraser(
        ledger, [place("registry"), place("cohort results", fail=True), place("data key")]
    )
    with pytest.raises(errors.StorageUnavailableError, match=r"cohort results \(OSError\)"):
        await eraser.erase("p1")
    assert ledger.names == ["p1"] and done == ["registry", "data key"]
    assert await ledger.incomplete() == ["p1"]  # not marked complete: it will be redone
    with pytest.raises(ValueError, match="distinct"):
        Eraser(ledger, [place("a"), place("a")])


async def test_an_erasure_that_skipped_an_unreachable_place_is_not_complete():
    ledger = _Ledger()
    done: list[str] = []

    async def erase(pid: str) -> int:
        done.append(pid)
        return 1

    eraser = Eraser(
        ledger,
        [Place("registry", "r", (), erase), Place("twin", "t", (), erase, reachable=False)],
    )
    removed = await eraser.erase("p1")
    assert removed == {"registry": 1, "twin": 0} and done == ["p1"]
    assert await ledger.incomplete() == ["p1"]


class _Snapshot:
    def __init__(self, keyed: list[str]) -> None:
        self.keyed = keyed

    async def patient_ids(self) -> list[str]:
        return list(self.keyed)


async def test_applying_the_ledger_goes_on_past_a_failing_patient():
    from twin.service.erasure_ledger import apply_erasure_ledger
    from twin.testing.fakes import MemoryTwinIndex

    ledger = _Ledger()
    for pid in ("a-stuck", "b-unfinished", "c-revived"):
        await ledger.record(pid)

    async def erase(pid: str) -> int:
        if pid == "a-stuck":
            raise OSError("a damaged file")
        return 1

    eraser = Eraser(ledger, [Place("cohort results", "c", (), erase)])
    done = await apply_erasure_ledger(ledger, _Snapshot(["c-revived"]), MemoryTwinIndex(), eraser)
    assert (done.revived, done.completed, done.failed) == (1, 1, ("a-stuck",))
    assert await ledger.incomplete() == ["a-stuck"]
    # A revived patient (one with a data key) that cannot be erased again stops the service.
    stuck = Eraser(ledger, [Place("cohort results", "c", (), erase)])
    with pytest.raises(errors.StorageUnavailableError, match="still have a data key"):
        await apply_erasure_ledger(ledger, _Snapshot(["a-stuck"]), MemoryTwinIndex(), stuck)
