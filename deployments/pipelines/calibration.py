"""Population calibration as a Ray job: courses from the event logs, SMM fit, model registry.

Pipeline::

    twins selected from the index (a CohortFilter) -> patient ids
      -> map_batches on an actor pool: read each patient's event log, reduce it to a course
         (twin.analytics.calibration.course_of) or the reason it is left out
      -> the driver: arms and moments; the SMM fit, every objective evaluation simulating the
         arms as parallel Ray tasks
      -> a new prior set in the model registry (document) with its diagnostics; optionally
         activated, so new twins take it (existing twins keep the set they were created with)

Only counts, moments and fitted values leave the workers: no patient id or score is stored with
the prior set.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pyarrow as pa
import ray

from deployments.pipelines.loop_bound import LoopBound
from deployments.stores import open_cohort_stores, open_documents, open_twin_reader
from twin import errors, schemas
from twin.analytics import calibration
from twin.model import priors as prior_sets
from twin.service import jobs
from twin.service.priors import DocumentPriorRegistry, PriorSetRecord
from twin.settings import TwinSettings

__all__ = ["run_calibration"]

A = TypeVar("A")
R = TypeVar("R")
_OUT = pa.schema([("course", pa.string()), ("excluded", pa.string())])
_READ_BATCH = 32


class _CourseReader:
    """A pool actor: reads event logs and reduces them to courses."""

    def __init__(self, settings_values: dict[str, Any]) -> None:
        self._stores = LoopBound(open_twin_reader(TwinSettings(**settings_values)))
        self._events = self._stores.value[0]

    def __call__(self, batch: dict[str, Any]) -> pa.Table:
        courses: list[str | None] = []
        excluded: list[str | None] = []
        for pid in batch["patient_id"]:
            try:
                log = self._stores.run(self._events.read(str(pid)))
            except errors.TwinError as exc:
                courses.append(None)
                excluded.append(f"log unreadable: {type(exc).__name__}")
                continue
            found = calibration.course_of(log)
            if isinstance(found, str):
                courses.append(None)
                excluded.append(found)
            else:
                courses.append(json.dumps(found.to_dict()))
                excluded.append(None)
        return pa.table({"course": courses, "excluded": excluded}, schema=_OUT)


def _ray_map(fn: Callable[[A], R], items: Sequence[A]) -> list[R]:
    """``map`` over Ray tasks (one arm simulation per task)."""
    task = ray.remote(num_cpus=1)(fn)
    return list(ray.get([task.remote(item) for item in items]))


async def _patients(
    settings: TwinSettings, selection: schemas.CohortFilter | None, care_teams: Sequence[str]
) -> list[str]:
    """Registered patients of the care teams (bulk-ingested ones included), or indexed twins."""
    found: set[str] = set()
    async with open_cohort_stores(settings) as stores:
        for team in care_teams:
            after: str | None = None
            while page := await stores.registry.list_for_team(team, after=after, limit=1000):
                found.update(page)
                after = page[-1]
        if selection is not None:
            entries = await stores.index.search(
                min_severity=selection.min_severity,
                alert=selection.alert,
                min_p_severe=selection.min_p_severe,
                limit=selection.limit,
            )
            found.update(e.patient_id for e in entries)
    return sorted(found)


async def _register(settings: TwinSettings, record: PriorSetRecord, activate: bool) -> None:
    async with open_documents(settings) as documents:
        registry = DocumentPriorRegistry(documents)
        await registry.save(record)
        if activate:
            await registry.activate(record.version)


def run_calibration(
    settings: TwinSettings,
    selection: schemas.CohortFilter | None = None,
    *,
    care_teams: Sequence[str] = (),
    activate: bool = False,
    n_sim: int = 4000,
    max_evaluations: int = 300,
    readers: int = 2,
    seed: int = 0,
) -> PriorSetRecord:
    """Fit the population priors to the selected twins' logs (``ray.init`` first).

    Args:
        settings: The platform's settings.
        selection: Twins selected by their index entries (activated twins only).
        care_teams: Every registered patient of these teams, bulk-ingested ones included
            (their logs are read directly; they need no twin yet).
        activate: Make the new prior set the one new twins take.
        n_sim: Simulated patients per arm and evaluation.
        max_evaluations: Budget of objective evaluations.
        readers: Largest log-reader pool.
        seed: Seed of the simulated cohorts.

    Returns:
        The stored record (version ``calib-<job id>``), with the fit's diagnostics.

    Raises:
        InvalidInputError: No patient selected, or no arm identifies a parameter.
    """
    pids = asyncio.run(_patients(settings, selection, care_teams))
    if not pids:
        raise errors.InvalidInputError("the selection matches no patient")
    ds = ray.data.from_items([{"patient_id": p} for p in pids]).map_batches(
        _CourseReader,
        batch_size=_READ_BATCH,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, readers)),
        num_cpus=0.5,
        fn_constructor_kwargs={"settings_values": settings.for_workers()},
    )
    courses: list[calibration.Course] = []
    excluded: Counter[str] = Counter()
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        for course, reason in zip(
            batch["course"].to_pylist(), batch["excluded"].to_pylist(), strict=True
        ):
            if course is not None:
                courses.append(calibration.Course.from_dict(json.loads(course)))
            else:
                excluded[str(reason)] += 1
    # The courses refit what they identify on top of the current model (the shipped joint fit),
    # whose other values the new set keeps.
    base = prior_sets.LITERATURE
    result = calibration.fit(
        courses, start=base.parameters(), n_sim=n_sim, seed=seed,
        max_evaluations=max_evaluations, mapper=_ray_map,
    )  # fmt: skip
    job_id = jobs.new_job_id()
    record = PriorSetRecord(
        version=f"calib-{job_id}",
        overrides={**base.overrides, **result.estimates},
        estimator="smm",
        created_at=jobs.utc_now(),
        diagnostics={
            **result.diagnostics(),
            "base": base.version,
            "courses": len(courses),
            "excluded": dict(excluded.most_common()),
            "selection": {
                "index_filter": selection.model_dump(exclude_none=True) if selection else None,
                "care_teams": sorted(care_teams),
            },
            "seed": seed,
        },
    )
    asyncio.run(_register(settings, record, activate))
    return record
