"""The twin operations are defined once; hosts implement them and forwarders do not restate them."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from twin import errors
from twin.service.host import TwinHost
from twin.service.operations import OPERATIONS, Forwarding, TwinOperations, invoke


def test_the_host_implements_every_operation_with_the_protocols_signature():
    assert {"ingest", "summary", "forecast", "compare", "erase"} <= OPERATIONS
    for name in OPERATIONS:
        declared = inspect.signature(getattr(TwinOperations, name))
        implemented = inspect.signature(getattr(TwinHost, name))
        assert list(declared.parameters.values()) == list(implemented.parameters.values()), name


class _Recorder(Forwarding):
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, tuple[Any, ...], dict[str, Any]]] = []

    async def forward(self, operation, patient_id, args, kwargs):
        self.calls.append((operation, patient_id, args, kwargs))
        return operation


async def test_a_forwarder_carries_every_operation_and_nothing_else():
    forwarder = _Recorder()
    assert isinstance(forwarder, Forwarding)
    for name in sorted(OPERATIONS):
        assert await getattr(forwarder, name)("p1") == name
    assert await forwarder.forecast("p2", ({"name": "a"},), weeks=4) == "forecast"
    assert forwarder.calls[-1] == ("forecast", "p2", ([{"name": "a"}],), {"weeks": 4})
    with pytest.raises(AttributeError):
        forwarder.stats  # noqa: B018 - not a twin operation
    with pytest.raises(AttributeError):
        forwarder._flush  # noqa: B018


async def test_the_receiving_end_refuses_anything_but_an_operation():
    class Target:
        async def summary(self, patient_id: str) -> str:
            return f"summary of {patient_id}"

        async def _flush(self, patient_id: str) -> None:
            raise AssertionError("never reached")

    assert await invoke(Target(), "summary", "p1") == "summary of p1"  # type: ignore[arg-type]
    for name in ("_flush", "passivate_idle", "__class__"):
        with pytest.raises(errors.InvalidInputError):
            await invoke(Target(), name, "p1")  # type: ignore[arg-type]
