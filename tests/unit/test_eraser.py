"""The Eraser: ledger first, every place in order, and one failing place stops no other."""

import pytest

from twin import errors
from twin.service.erasure import Eraser, Place


class _Ledger:
    def __init__(self) -> None:
        self.names: list[str] = []
        self.done: set[str] = set()

    async def record(self, patient_id: str) -> None:
        self.names.append(patient_id)

    async def erased(self) -> list[str]:
        return list(self.names)

    async def complete(self, patient_id: str) -> None:
        self.done.add(patient_id)

    async def incomplete(self) -> list[str]:
        return sorted(set(self.names) - self.done)


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
