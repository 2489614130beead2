"""Synthetic cohorts as twins: a :class:`twin.CohortSpec` turned into assimilated posteriors.

Virtual patient ``i`` of a spec is simulated in block ``i // BLOCK`` with the seed derived from
``(spec.seed, block)``: :func:`twin.model.cohort.simulate_cohort` enrols and runs the block for
``spec.days`` under the spec's regimen, care and sessions. Each patient's observable history
(the PHQ-9 totals at the observation days, the prescriptions, sessions and care) becomes an event
log that a new twin assimilates with the production kernel. The what-if then starts at day
``spec.days`` from each twin's posterior, exactly as it would for a real patient.

A ``start="remitted"`` cohort (maintenance patients, in remission at steady state on the day-0
regimen) works the same way: its twins learn the maintenance state from the observed history
(the prescription, then low scores). A new twin's drug exposure and effects start at zero, so
the history must be long enough for them to reach the patients' steady state
(:func:`twin.model.cohort.maintenance_history_days`: five half-lives of every maintenance drug,
and four weeks for the care effect, τ_P = 5 days).

A patient depends only on the spec and its block, so any split of the blocks over workers gives
the same twins.
"""

from __future__ import annotations

import hashlib

from twin import errors
from twin.analytics.whatif import CohortTwin
from twin.assimilation import kernel
from twin.assimilation.state import new_twin
from twin.domain import events
from twin.model.cohort import CohortSpec, require_maintenance_history, simulate_cohort
from twin.model.priors import LITERATURE, PriorSet

__all__ = ["BLOCK", "blocks", "history_events", "synthetic_twins"]

#: Virtual patients simulated together (one block is the unit of work and of randomness).
BLOCK = 64


def blocks(spec: CohortSpec) -> int:
    """Number of blocks of the spec's cohort."""
    return -(-spec.n_patients // BLOCK)


def _block_seed(seed: int, block: int) -> int:
    digest = hashlib.sha256(f"novamind-cohort|{seed}|{block}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def history_events(spec: CohortSpec, phq9: list[int], obs_days: list[int]) -> list[events.Event]:
    """The observable log of one virtual patient of ``spec`` (interventions before same-day scores).

    Args:
        spec: The cohort (its care, regimen and sessions are the patient's treatment).
        phq9: The patient's observed PHQ-9 totals at ``obs_days``.
        obs_days: Observation days.
    """
    timeline: list[tuple[float, events.Payload]] = []
    active = spec.care != "none"
    timeline.append((0.0, events.CareStatus(active, spec.care if active else None)))
    for change in spec.regimen:
        if change.day <= spec.days:
            timeline.append(
                (change.day + 0.01, events.Prescription(change.drug, change.mg_per_day))
            )
    for day in spec.therapy_session_days:
        if day < spec.days:
            timeline.append((day + 0.5, events.TherapySession("psychotherapy")))
    for day in spec.cbti_session_days:
        if day < spec.days:
            timeline.append((day + 0.5, events.TherapySession("cbti")))
    for day, score in zip(obs_days, phq9, strict=True):
        timeline.append((day + 0.3, events.Phq9(int(score))))
    timeline.sort(key=lambda item: item[0])
    return [events.Event(seq, day, payload) for seq, (day, payload) in enumerate(timeline, 1)]


def synthetic_twins(
    spec: CohortSpec,
    block: int,
    *,
    particles: int,
    prior: PriorSet | None = None,
) -> list[CohortTwin]:
    """The twins of one block of the spec's virtual cohort.

    Args:
        spec: The cohort (a remitted one needs ``maintenance_history_days(spec)`` of history).
        block: Block index, 0 .. ``blocks(spec) - 1``.
        particles: Particles per twin.
        prior: The prior set (the truth the patients are drawn from, and the twins' prior,
            recorded in each twin); default the current model, ``priors.LITERATURE``.

    Returns:
        The block's twins, pseudonyms ``syn-<seed>-<index>``.
    """
    require_maintenance_history(spec)
    if not 0 <= block < blocks(spec):
        raise errors.ObservationRangeError("block", block, f"0..{blocks(spec) - 1}")
    first = block * BLOCK
    size = min(BLOCK, spec.n_patients - first)
    part = spec.model_copy(update={"n_patients": size, "seed": _block_seed(spec.seed, block)})
    prior = prior or LITERATURE
    params = prior.parameters()
    result = simulate_cohort(part, params=params)
    obs_days = [int(d) for d in result.obs_days]
    names = [f"syn-{spec.seed}-{first + i}" for i in range(size)]
    # The twins assume the episode duration their cohort's patients were drawn with.
    assumed = spec.population.episode_weeks
    states = [
        new_twin(
            name, n_particles=particles, params=params, prior_version=prior.version,
            episode_weeks=assumed,
        )
        for name in names
    ]  # fmt: skip
    logs = [history_events(spec, [int(v) for v in result.phq9[i]], obs_days) for i in range(size)]
    kernel.apply_events(states, logs, params=params)
    return [CohortTwin(name, state) for name, state in zip(names, states, strict=True)]
