"""Twin calls to one host coalesce into one actor call, each keeping its own outcome.

The runtime is driven with a stand-in for Ray's actor handle (``call_many.remote`` returning an
awaitable, as Ray's does); the receiving end is the real ``TwinHostActor`` class, called as a
plain object on in-memory stores (no Ray here: see conftest.py).
"""

from __future__ import annotations

import asyncio
import pickle
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from ray import exceptions as ray_errors

from actors import directory as directory_module
from actors import host_actor as host_actor_module
from actors.directory import RayTwinDirectory
from actors.host_actor import TwinHostActor
from actors.runtime import TwinRuntime
from twin import errors
from twin.domain import events as E
from twin.domain.specs import Scenario
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

    def __init__(
        self, actor: TwinHostActor | None = None, *, dies: int = 0, for_good: bool = False
    ) -> None:
        self.actor = actor
        self.batches: list[list[Any]] = []
        self.dies = dies  # the first ``dies`` deliveries fail as if the host were killed
        self.for_good = for_good  # ... and ended for good (Ray will not restart it)
        self.call_many = _Method(self)

    async def deliver(self, calls: list[Any]) -> list[tuple[bool, Any]]:
        self.batches.append(calls)
        if self.for_good:
            raise ray_errors.ActorDiedError()
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
        self.started: list[str] = []

    def host_for(self, patient_id: str) -> tuple[str, _Handle]:
        name = "h0" if patient_id.startswith("a") else "h1"
        if name not in self.handles:  # as RayTwinDirectory: found by name, or started again
            self.started.append(name)
            self.handles[name] = _Handle()
        return name, self.handles[name]

    def forget(self, name: str) -> None:
        del self.handles[name]


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


async def test_a_host_ended_for_good_is_found_again_by_name():
    # A handle to an actor Ray will not restart (ended with ray.kill) fails every call: the
    # runtime drops it and the directory finds or starts the host again.
    directory = _Directory({"h0": _Handle(for_good=True)})
    runtime = TwinRuntime(directory, retry_for_s=10.0)  # type: ignore[arg-type]
    assert await runtime.summary("a1") == ("summary", "a1")
    assert directory.started == ["h0"]


async def test_a_host_that_stays_down_ends_in_host_unavailable():
    h0 = _Handle(dies=10_000)
    runtime = TwinRuntime(_Directory({"h0": h0}), retry_for_s=0.2)  # type: ignore[arg-type]
    with pytest.raises(errors.HostUnavailableError):
        await runtime.summary("a1")


def _new_host(tmp_path: Any) -> TwinHostActor:
    async def open_ports(settings: TwinSettings) -> HostPorts:
        return HostPorts(
            fakes.MemoryEventStore(), fakes.MemoryCheckpointStore(), fakes.PlainSealer()
        )

    return TwinHostActor(
        TwinSettings(data_dir=tmp_path).for_workers(), open_ports, HostSettings(particles=200)
    )


@pytest.fixture
def host_actor(tmp_path: Any) -> Iterator[TwinHostActor]:
    actor = _new_host(tmp_path)
    yield actor
    actor._served.set()  # its kernels load before the next test (which may replace them)
    actor.kernels_loading.join(60)
    assert not actor.kernels_loading.is_alive()


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


class _Kernels:
    """Records what a host asks the kernels to load (the real ones stay as they are).

    The forecast's load lasts until ``release`` is set (set from the start unless asked).
    """

    def __init__(self, *, held: bool = False) -> None:
        self.asked: list[str] = []
        self.release = threading.Event()
        if not held:
            self.release.set()

    def load(self, *, assimilation_only: bool = False) -> None:
        self.asked.append("assimilation" if assimilation_only else "forecast")
        if not assimilation_only:
            assert self.release.wait(30)


def _recording_kernels(
    monkeypatch: pytest.MonkeyPatch, *, after_s: float, held: bool = False
) -> _Kernels:
    kernels = _Kernels(held=held)
    monkeypatch.setattr(host_actor_module, "day_kernel", kernels)
    monkeypatch.setattr(
        host_actor_module,
        "counter_random",
        SimpleNamespace(load=lambda: kernels.asked.append("rng")),
    )
    monkeypatch.setattr(host_actor_module, "FORECAST_KERNELS_AFTER_S", after_s)
    return kernels


async def _loaded(actor: TwinHostActor) -> None:
    await asyncio.to_thread(actor.kernels_loading.join, 10)
    assert not actor.kernels_loading.is_alive()


@pytest.mark.parametrize("batched", [True, False])
async def test_a_new_host_loads_the_forecasts_kernels_only_after_its_first_answer(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, batched: bool
) -> None:
    # A restarted host's first answers are the writes its callers retried: the forecast's
    # kernels, which hold the interpreter for most of a second, must not delay them.
    kernels = _recording_kernels(monkeypatch, after_s=60.0)
    actor = _new_host(tmp_path)
    assert kernels.asked == ["assimilation"]  # what an ingest steps, before any answer
    await asyncio.sleep(0.2)
    assert kernels.asked == ["assimilation"]
    write = ("ingest", "a1", ([NewEvent("k1", 1.0, E.Phq9(9))],), {}, None)
    if batched:
        (outcome,) = await actor.call_many([write])
        assert outcome[0], outcome
    else:
        await actor.call(*write)
    await _loaded(actor)
    assert kernels.asked == ["assimilation", "forecast", "rng"]


async def test_a_host_nobody_calls_still_loads_the_forecasts_kernels(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernels = _recording_kernels(monkeypatch, after_s=0.05)
    await _loaded(_new_host(tmp_path))
    assert kernels.asked == ["assimilation", "forecast", "rng"]


async def test_a_forecast_asked_first_waits_for_the_kernels_off_the_event_loop(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernels = _recording_kernels(monkeypatch, after_s=60.0, held=True)
    actor = _new_host(tmp_path)
    await actor.call("ingest", "a1", ([NewEvent("k1", 1.0, E.Phq9(9))],), {})
    kernels.asked.clear()
    # Forecasts asked before the kernels are loaded start their load (no 60 s wait) and wait
    # for it; meanwhile the host answers its other twins, and its loop's thread pool, which
    # the stores' blocking calls use, is not taken by the waiting forecasts.
    forecast = ("forecast", "a1", ([Scenario()],), {"weeks": 2}, None)
    waiting = [asyncio.ensure_future(actor.call_many([forecast])) for _ in range(40)]
    await asyncio.sleep(0.2)
    assert kernels.asked == ["forecast"]
    assert not any(w.done() for w in waiting)
    summary = await asyncio.wait_for(actor.call("summary", "a1", (), {}), 5)
    assert summary.last_seq == 1
    assert await asyncio.wait_for(asyncio.to_thread(lambda: "pool free"), 5) == "pool free"
    kernels.release.set()
    outcomes = await asyncio.wait_for(asyncio.gather(*waiting), 30)
    assert all(ok for ((ok, _),) in outcomes), outcomes
    await _loaded(actor)
    assert kernels.asked == ["forecast", "rng"]


async def _no_ports(settings: TwinSettings) -> HostPorts:
    raise AssertionError("not opened here")


def test_a_host_found_dead_is_forgotten_at_most_once_per_interval(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A host whose start keeps failing is not started again at every retry of every caller.
    settings = TwinSettings(data_dir=tmp_path)
    directory = RayTwinDirectory(settings, _no_ports, settings.host)
    directory._handles["twinhost-0"] = "first"
    directory.forget("twinhost-0")
    assert "twinhost-0" not in directory._handles
    directory._handles["twinhost-0"] = "second"
    directory.forget("twinhost-0")  # within FORGET_EVERY_S of the first
    assert directory._handles["twinhost-0"] == "second"
    monkeypatch.setattr(directory_module, "FORGET_EVERY_S", 0.0)
    directory.forget("twinhost-0")
    assert "twinhost-0" not in directory._handles
