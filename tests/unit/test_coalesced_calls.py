"""Twin calls to one host coalesce into one actor call, each keeping its own outcome.

The runtime is driven with a stand-in for Ray's actor handle (``call_many.remote`` returning an
awaitable, as Ray's does); the receiving end is the real ``TwinHostActor`` class, called as a
plain object on in-memory stores (no Ray here: see conftest.py).
"""

from __future__ import annotations

import asyncio
import pickle
from typing import Any

import pytest
from ray import exceptions as ray_errors

from actors.host_actor import TwinHostActor
from actors.runtime import TwinRuntime
from twin import errors
from twin.domain import events as E
from twin.ports import NewEvent
from twin.service.host import HostPorts
from twin.settings import HostSettings, TwinSettings
from twin.testing import fakes


class _Method:
    def __init__(self, target: _Handle) -> None:
        self._target = target

    def remote(self, calls: list[Any]) -> Any:
        return self._target.deliver(calls)


class _Handle:
    """What the runtime sees of a host actor: ``call_many.remote`` (an awaitable)."""

    def __init__(self, actor: TwinHostActor | None = None, *, dies: int = 0) -> None:
        self.actor = actor
        self.batches: list[list[Any]] = []
        self.dies = dies  # the first ``dies`` deliveries fail as if the host were killed
        self.call_many = _Method(self)

    async def deliver(self, calls: list[Any]) -> list[tuple[bool, Any]]:
        self.batches.append(calls)
        if self.dies:
            self.dies -= 1
            raise ray_errors.RayActorError()
        if self.actor is None:
            return [(True, (operation, patient)) for operation, patient, *_ in calls]
        # What Ray does to the outcomes on the way back: pickles them.
        return pickle.loads(pickle.dumps(await self.actor.call_many(calls)))


class _Directory:
    """Patients ``a*`` live on host ``h0``, the others on ``h1``."""

    def __init__(self, handles: dict[str, _Handle]) -> None:
        self.handles = handles

    def host_for(self, patient_id: str) -> tuple[str, _Handle]:
        name = "h0" if patient_id.startswith("a") else "h1"
        return name, self.handles[name]


async def test_calls_in_one_turn_of_the_loop_travel_as_one_actor_call_per_host():
    h0, h1 = _Handle(), _Handle()
    runtime = TwinRuntime(_Directory({"h0": h0, "h1": h1}))  # type: ignore[arg-type]
    patients = ["a1", "a2", "a3", "b1", "b2"]
    results = await asyncio.gather(*(runtime.summary(p) for p in patients))
    assert results == [("summary", p) for p in patients]  # each caller gets its own outcome
    assert [len(b) for b in h0.batches] == [3]
    assert [len(b) for b in h1.batches] == [2]
    # A lone call goes alone, at once.
    assert await runtime.summary("a9") == ("summary", "a9")
    assert [len(b) for b in h0.batches] == [3, 1]


async def test_a_batch_whose_host_died_is_retried_by_every_caller():
    h0 = _Handle(dies=2)
    runtime = TwinRuntime(_Directory({"h0": h0}), retry_for_s=10.0)  # type: ignore[arg-type]
    results = await asyncio.gather(*(runtime.summary(p) for p in ("a1", "a2")))
    assert results == [("summary", "a1"), ("summary", "a2")]
    assert len(h0.batches) == 3  # two lost deliveries, then the one that answered


async def test_a_host_that_stays_down_ends_in_host_unavailable():
    h0 = _Handle(dies=10_000)
    runtime = TwinRuntime(_Directory({"h0": h0}), retry_for_s=0.2)  # type: ignore[arg-type]
    with pytest.raises(errors.HostUnavailableError):
        await runtime.summary("a1")


@pytest.fixture
def host_actor(tmp_path: Any) -> TwinHostActor:
    async def open_ports(settings: TwinSettings) -> HostPorts:
        return HostPorts(
            fakes.MemoryEventStore(), fakes.MemoryCheckpointStore(), fakes.PlainSealer()
        )

    return TwinHostActor(
        TwinSettings(data_dir=tmp_path).for_workers(), open_ports, HostSettings(particles=200)
    )


async def test_one_calls_error_is_its_own_in_a_batch_through_the_host(host_actor):
    h0 = _Handle(host_actor)
    runtime = TwinRuntime(_Directory({"h0": h0}))  # type: ignore[arg-type]
    await runtime.ingest("a1", [NewEvent("k1", 5.0, E.Phq9(12))])
    late = runtime.ingest("a1", [NewEvent("k0", 1.0, E.Phq9(9))])  # older than day 5
    fine = runtime.ingest("a2", [NewEvent("k2", 2.0, E.Phq9(14))])
    read = runtime.summary("a1")
    outcomes = await asyncio.gather(late, fine, read, return_exceptions=True)
    assert isinstance(outcomes[0], errors.EventOrderError)
    assert [a.seq for a in outcomes[1].appended] == [1]
    assert outcomes[2].last_seq == 1
    assert [len(b) for b in h0.batches] == [1, 3]


async def test_an_error_that_does_not_pickle_reaches_its_caller_as_text(host_actor):
    class UnpicklableError(Exception):
        def __reduce__(self) -> Any:
            raise TypeError("cannot pickle")

    async def broken(patient_id: str) -> Any:
        raise UnpicklableError("the store said no")

    host = await host_actor._ready()
    host.summary = broken  # type: ignore[method-assign]
    outcomes = await host_actor.call_many(
        [("summary", "a1", (), {}, None), ("state_bytes", "a2", (), {}, None)]
    )
    pickle.dumps(outcomes)  # the whole batch still crosses the process boundary
    (ok, error), (ok2, _) = outcomes
    assert not ok and ok2
    assert isinstance(error, RuntimeError) and "UnpicklableError: the store said no" in str(error)
