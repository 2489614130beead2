"""Twins on real Ray actors: routing, replay equals live across processes, SIGKILL safety."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from deployments.host_ports import build_host_ports
from twin.domain import events as E
from twin.domain.specs import Scenario
from twin.model.virtual_patient import synthetic_patient
from twin.ports import NewEvent
from twin.service.host import TwinHost
from twin.settings import HostSettings

pytestmark = pytest.mark.ray


def _log(seed: int, days: int) -> list[NewEvent]:
    patient = synthetic_patient(seed, days=days, phq9_every=7, ema_per_day=2)
    return [NewEvent(f"{seed}-{e.seq}", e.day, e.payload) for e in patient.events]


async def test_twins_spread_over_hosts_and_replay_equals_live(runtime, settings):
    patients = {f"patient-{i}": _log(i, days=20) for i in range(6)}
    for pid, log in patients.items():
        for start in range(0, len(log), 15):
            await runtime.ingest(pid, log[start : start + 15])
    hosts = await runtime.hosts()
    assert sum(s["active_twins"] for s in hosts.values()) == len(patients)
    assert all(s["active_twins"] > 0 for s in hosts.values())  # rendezvous spreads them
    live = {pid: await runtime.state_bytes(pid) for pid in patients}
    # Rebuilt in this process from the same stores: checkpoint + log, bit for bit.
    stores = await build_host_ports(settings)
    rebuilt = TwinHost(stores, settings=HostSettings(particles=200))
    for pid in patients:
        assert (await rebuilt.state(pid)).to_bytes() == live[pid]
    await stores.aclose()
    summary = await runtime.summary("patient-0")
    assert summary.last_seq == len(patients["patient-0"])


async def test_sigkill_of_a_host_loses_nothing_acknowledged_and_applies_nothing_twice(
    runtime, settings
):
    patient = "patient-under-fire"
    batches = [
        [NewEvent(f"b{i}-{j}", i + 0.1 * j, E.EmaAffect(1 + (i + j) % 7)) for j in range(5)]
        for i in range(40)
    ]
    acknowledged: dict[str, int] = {}

    async def client() -> None:
        for batch in batches:
            # The runtime retries through host deaths (same idempotency keys) for up to 60 s.
            result = await runtime.ingest(patient, batch)
            for event, ack in zip(batch, result.appended, strict=True):
                acknowledged[event.idempotency_key] = ack.seq
            await asyncio.sleep(0.02)

    async def killer() -> int:
        kills = 0
        for _ in range(3):
            await asyncio.sleep(0.7)
            pid = await runtime.host_pid(patient)
            os.kill(pid, signal.SIGKILL)
            kills += 1
        return kills

    _, kills = await asyncio.gather(client(), killer())
    assert kills == 3
    total = sum(len(b) for b in batches)
    stores = await build_host_ports(settings)
    log = await stores.events.read(patient)
    await stores.aclose()
    assert len(acknowledged) == total  # every event acknowledged
    assert sorted(acknowledged.values()) == list(range(1, total + 1))  # each once, no gaps
    assert [e.seq for e in log] == list(range(1, total + 1))  # nothing lost, nothing doubled
    state = await runtime.summary(patient)
    assert state.last_seq == total


async def test_a_dedicated_twin_gets_its_own_host(runtime):
    name = runtime.dedicate("vip")
    assert name.startswith("twin-")
    result = await runtime.ingest("vip", [NewEvent("v1", 0.5, E.Phq9(9))])
    assert result.last_seq == 1
    hosts = await runtime.hosts()
    assert hosts[name]["active_twins"] == 1


async def test_a_stopping_platform_finds_every_host_by_name_and_has_it_checkpoint(
    runtime, settings
):
    from actors.directory import RayTwinDirectory
    from deployments.stores import checkpoint_store

    dedicated = runtime.dedicate("vip-stop")
    await runtime.ingest("vip-stop", [NewEvent("v1", 0.5, E.Phq9(9))])
    await runtime.ingest("shared-stop", [NewEvent("s1", 0.5, E.Phq9(11))])
    checkpoints = checkpoint_store(settings)
    assert await checkpoints.latest("vip-stop") is None  # one event: no checkpoint due yet

    # Another process's directory (the platform's driver) starts no host, and finds them all.
    found = RayTwinDirectory(settings, build_host_ports, settings.host).running_hosts()
    assert set(found) == {"twinhost-0", "twinhost-1", dedicated}
    written = await asyncio.gather(*(host.checkpoint_active.remote() for host in found.values()))
    assert sorted(written) == [0, 1, 1]
    assert [(await checkpoints.latest(p)).seq for p in ("vip-stop", "shared-stop")] == [1, 1]


async def test_a_restarted_host_forecasts_while_its_forecast_kernels_still_load(runtime):
    # A host's start waits only for the kernel an ingest steps; the forecast's load in a thread.
    # A forecast asked at once after a restart runs beside that thread, with the same answer.
    patient = "forecast-after-restart"
    await runtime.ingest(patient, _log(3, days=10))
    scenario = [Scenario(name="as is")]
    before = await runtime.forecast(patient, scenario, weeks=4)
    os.kill(await runtime.host_pid(patient), signal.SIGKILL)
    after = await runtime.forecast(patient, scenario, weeks=4)
    assert after == before


async def test_a_host_ended_for_good_is_started_again_at_its_next_use(runtime):
    # An operator's ray.kill (no restart) leaves the runtime's handle dead: the next call finds
    # no host of that name and the directory starts a new one, which rebuilds the twin.
    import ray

    patient = "ended-host"
    await runtime.ingest(patient, [NewEvent("e1", 0.5, E.Phq9(9))])
    name, handle = runtime._directory.host_for(patient)
    ray.kill(handle, no_restart=True)
    result = await runtime.ingest(patient, [NewEvent("e2", 1.5, E.Phq9(8))])
    assert result.last_seq == 2
    again = runtime._directory.hosts()[name]
    assert again._actor_id != handle._actor_id  # a new actor of the same name
