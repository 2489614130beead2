"""Population calibration as a Ray job: event logs -> courses -> SMM -> model registry.

Patients are registered and their logs appended exactly as bulk ingest leaves them (no twin
activated); the job reads the logs on Ray Data, fits on Ray tasks, stores a versioned prior set
with its diagnostics and activates it; a twin created afterwards records that version.
"""

from __future__ import annotations

import asyncio

import pytest

from deployments.host_ports import build_host_ports
from deployments.pipelines.calibration import run_calibration
from deployments.stores import open_documents, open_event_writer
from tests.builders import calibration_design
from twin import errors, ports
from twin.analytics.synthetic import history_events
from twin.domain import events as E
from twin.domain.patients import Identifiers
from twin.model.cohort import simulate_cohort
from twin.model.priors import BUILTIN_VERSION, LITERATURE
from twin.service.host import TwinHost
from twin.service.priors import DocumentPriorRegistry
from twin.settings import TwinSettings

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray

DESIGN = calibration_design(60, 28, 60, 56)


async def _ingested(settings: TwinSettings) -> list[str]:
    pids: list[str] = []
    async with open_event_writer(settings) as (log, registry):
        for spec in DESIGN:
            cohort = simulate_cohort(spec)
            days = [int(d) for d in cohort.obs_days]
            for i, scores in enumerate(cohort.phq9):
                pid = await registry.create(
                    Identifiers(f"S{len(pids)}", "1980-01-01", f"S{len(pids)}", None),
                    care_team="study",
                )
                events = history_events(spec, [int(v) for v in scores], days)
                if i == 0:  # one course with psychotherapy: left out, and counted
                    events.append(E.Event(len(events) + 1, 60.0, E.TherapySession()))
                await log.append(
                    pid, [ports.NewEvent(f"{pid}-{e.seq}", e.day, e.payload) for e in events]
                )
                pids.append(pid)
    return pids


async def _new_twin_version(settings: TwinSettings) -> str:
    stores = await build_host_ports(settings)
    try:
        host = TwinHost(stores, settings=settings.host)
        await host.ingest("pt_after", [ports.NewEvent("a1", 0.3, E.Phq9(15))])
        return (await host.state("pt_after")).prior_version
    finally:
        await stores.aclose()


async def _registry_record(settings: TwinSettings, version: str) -> dict[str, object]:
    async with open_documents(settings) as documents:
        registry = DocumentPriorRegistry(documents)
        record = await registry.record(version)
        return {"active": (await registry.active()).version, **record.model_dump()}


def test_a_calibration_job_fits_registers_and_activates_a_prior_set(ray_cluster, settings):
    asyncio.run(_ingested(settings))
    with pytest.raises(errors.InvalidInputError, match="no patient"):
        run_calibration(settings, care_teams=["nobody"])
    record = run_calibration(
        settings, care_teams=["study"], activate=True, n_sim=400, max_evaluations=12
    )
    assert {"pi_mean", "e_max", "h10", "h01"} <= set(record.overrides)
    # The other values of the current model (the shipped joint fit) are kept.
    fitted = {"pi_mean", "e_max", "h10", "h01"}
    assert {k: v for k, v in record.overrides.items() if k not in fitted} == {
        k: v for k, v in LITERATURE.overrides.items() if k not in fitted
    }
    stored = asyncio.run(_registry_record(settings, record.version))
    assert stored["active"] == record.version
    diagnostics = stored["diagnostics"]
    assert diagnostics["excluded"]["psychotherapy"] == 4
    assert diagnostics["courses"] + sum(diagnostics["excluded"].values()) == 240
    assert {a["arm"] for a in diagnostics["arms"]} == {
        "episode, trial care, no drug", "episode, trial care, sertraline 100 mg",
        "episode, no care, no drug", "remitted, no care, no drug",
    }  # fmt: skip
    assert diagnostics["evaluations"] >= 12 and diagnostics["standard_errors"]
    assert "S1" not in str(stored) and "pt_" not in str(stored)
    assert asyncio.run(_new_twin_version(settings)) == record.version != BUILTIN_VERSION
