"""The twin's estimate and risks as FHIR R4: an Observation and a RiskAssessment, model-derived.

**The severity Observation.** The posterior of the latent depressive severity S (PHQ-9 points,
0-27; ``docs/model.md``) on the twin's day: ``valueQuantity`` the posterior mean, and two
components, the central 95% credible interval (``valueRange``, the weighted 2.5% and 97.5%
quantiles of the particles) and the posterior SD. Its code, method and tag are Novamind's
(``latent-severity``, ``particle-filter``, ``model-derived``): it is no PHQ-9 score a patient
reported (LOINC 44261-6 is that), and bulk ingest refuses anything tagged ``model-derived``.

**The RiskAssessment.** One prediction per outcome, with its horizon as an absolute period from
the twin's day (``whenPeriod``; a start equal to its end is a point in time):

=================  =====================================================  ==================
outcome            probability                                            when
=================  =====================================================  ==================
``episode``        P(in a depressive episode), posterior                  the twin's day
``severe``         P(S >= 15), posterior                                  the twin's day
``remission``      P(PHQ-9 < 5), forecast                                 week 8, week 12
``response``       P(PHQ-9 <= half the course baseline), forecast         week 8, week 12
``deterioration``  P(PHQ-9 >= latest observed + 5 at some week)          within 4, 8 weeks
=================  =====================================================  ==================

Forecast probabilities are Monte-Carlo estimates under continued care (the default scenario)
with their standard error in the prediction's ``rationale``; a probability the forecast cannot
give (no baseline PHQ-9 for response) is a prediction without ``probabilityDecimal`` whose
rationale says why. ``basis`` references the severity Observation and the patient's PHQ-9
Observations (the newest :data:`MAX_BASIS`).

Both are dated ``enrolment + day`` (:func:`twin.domain.time_axis.instant_of`), the twin's day:
the start of the day the posterior describes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from twin.assimilation import kernel
from twin.assimilation.state import TwinState
from twin.domain.codesystems import CODE_SYSTEM, CODES, MODEL_DERIVED, UCUM_SYSTEM
from twin.domain.time_axis import instant_of
from twin.fhir_out.dates import iso_instant
from twin.fhir_out.ids import fhir_patient_id, resource_id
from twin.fhir_out.record import novamind_concept, subject
from twin.fhir_out.validation import checked
from twin.forecast.summary import Forecast, Probability
from twin.model.dynamics import Row

__all__ = [
    "CREDIBLE_LEVEL",
    "ESTIMATE_TYPES",
    "MAX_BASIS",
    "Estimate",
    "estimate_of",
    "estimate_resources",
    "risk_assessment",
    "severity_observation",
]

#: The mass of the credible interval of the severity.
CREDIBLE_LEVEL = 0.95
#: PHQ-9 observations a RiskAssessment's ``basis`` references at most (the newest).
MAX_BASIS = 100
#: Resource types of the twin's estimates.
ESTIMATE_TYPES = ("Observation", "RiskAssessment")
_SCORE = {"system": UCUM_SYSTEM, "code": "{score}", "unit": "PHQ-9 points"}
_TAG = {"system": CODE_SYSTEM, "code": MODEL_DERIVED, "display": CODES[MODEL_DERIVED]}


@dataclass(frozen=True, slots=True)
class Estimate:
    """The twin's posterior of latent severity and its current risks.

    Attributes:
        day: The day the posterior describes (its start), days since the enrolment.
        last_seq: The last event the posterior has seen.
        model_version: The model's version.
        particles: Particles N (the Monte-Carlo sample size).
        severity_mean: Posterior mean of S, PHQ-9 points.
        severity_sd: Posterior SD of S, PHQ-9 points.
        severity_low: Lower end of the central :data:`CREDIBLE_LEVEL` interval, PHQ-9 points.
        severity_high: Upper end, PHQ-9 points.
        p_episode: Posterior probability of a depressive episode.
        p_severe: Posterior probability of S >= 15.
    """

    day: int
    last_seq: int
    model_version: str
    particles: int
    severity_mean: float
    severity_sd: float
    severity_low: float
    severity_high: float
    p_episode: float
    p_severe: float


def _weighted_quantiles(
    values: np.ndarray[Any, np.dtype[np.float64]],
    weights: np.ndarray[Any, np.dtype[np.float64]],
    levels: Sequence[float],
) -> list[float]:
    """Quantiles of a weighted sample: the smallest value whose cumulative weight reaches each.

    (The inverse of the weighted empirical CDF, ``inverted_cdf`` for equal weights.)
    """
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    cumulative /= cumulative[-1]
    at = np.searchsorted(cumulative, np.asarray(levels), side="left")
    return [float(values[order][min(i, values.size - 1)]) for i in at]


def estimate_of(state: TwinState) -> Estimate:
    """The twin's posterior summary and the credible interval of its severity.

    Mean, SD and probabilities are those of ``GET /v1/patients/{id}/twin`` (the same weighted
    particle means).
    """
    severity = state.particles[Row.S].astype(np.float64)
    tail = (1.0 - CREDIBLE_LEVEL) / 2.0
    low, high = _weighted_quantiles(severity, state.weights, (tail, 1.0 - tail))
    return Estimate(
        day=state.day,
        last_seq=state.last_seq,
        model_version=state.model_version,
        particles=state.n_particles,
        severity_mean=kernel.posterior_mean(state, Row.S),
        severity_sd=kernel.posterior_sd(state, Row.S),
        severity_low=low,
        severity_high=high,
        p_episode=kernel.posterior_probability(state, state.particles[Row.R] > 0.5),
        p_severe=kernel.posterior_probability(state, state.particles[Row.S] >= kernel.SEVERE_PHQ9),
    )


def _score(value: float) -> dict[str, Any]:
    return {"value": round(value, 2), **_SCORE}


def severity_observation(
    patient_id: str, enrolment: datetime, estimate: Estimate
) -> dict[str, Any]:
    """The posterior of latent severity as a model-derived Observation (module docstring)."""
    fid = fhir_patient_id(patient_id)
    method = (
        f"Model-derived, not observed: posterior of the Novamind digital twin (model "
        f"{estimate.model_version}, {estimate.particles} particles) after {estimate.last_seq} "
        "events"
    )
    return checked({
        "resourceType": "Observation",
        "id": resource_id(fid, "severity", estimate.last_seq),
        "meta": {"tag": [_TAG]},
        "status": "final",
        "code": novamind_concept(
            "latent-severity", "Latent depressive severity (model estimate on the PHQ-9 scale)"
        ),
        "subject": subject(fid),
        "effectiveDateTime": iso_instant(instant_of(estimate.day, enrolment)),
        "valueQuantity": _score(estimate.severity_mean),
        "method": novamind_concept("particle-filter", method),
        "component": [
            {
                "code": novamind_concept("credible-interval-95"),
                "valueRange": {
                    "low": _score(estimate.severity_low),
                    "high": _score(estimate.severity_high),
                },
            },
            {
                "code": novamind_concept("posterior-sd"),
                "valueQuantity": _score(estimate.severity_sd),
            },
        ],
    })  # fmt: skip


def _prediction(
    outcome: str, probability: Probability | float, start: datetime, end: datetime, basis: str
) -> dict[str, Any]:
    prediction: dict[str, Any] = {
        "outcome": novamind_concept(outcome),
        "whenPeriod": {"start": iso_instant(start), "end": iso_instant(end)},
    }
    if isinstance(probability, float):
        prediction["probabilityDecimal"] = round(probability, 4)
        prediction["rationale"] = basis
    elif probability.value is None:
        prediction["rationale"] = f"no estimate: {probability.reason}"
    else:
        prediction["probabilityDecimal"] = round(probability.value, 4)
        prediction["rationale"] = f"{basis}; Monte-Carlo standard error {probability.mc_se:.4f}"
    return prediction


def risk_assessment(
    patient_id: str,
    enrolment: datetime,
    estimate: Estimate,
    forecast: Forecast,
    phq9_observations: Sequence[str],
) -> dict[str, Any]:
    """The twin's risks as a model-derived RiskAssessment (module docstring).

    Args:
        patient_id: The Novamind patient id.
        enrolment: Day 0 of the patient's axis (aware).
        estimate: The posterior (:func:`estimate_of`).
        forecast: The forecast under continued care from the same posterior.
        phq9_observations: Ids of the patient's PHQ-9 Observations, oldest first.
    """
    fid = fhir_patient_id(patient_id)
    at = instant_of(estimate.day, enrolment)
    week = timedelta(weeks=1)
    posterior = f"posterior over {estimate.particles} particles"
    simulated = f"forecast under continued care, {forecast.particles} simulated futures"
    predictions = [
        _prediction("episode", estimate.p_episode, at, at, posterior),
        _prediction("severe", estimate.p_severe, at, at, posterior),
    ]
    for name, by_week in (("remission", forecast.remission), ("response", forecast.response)):
        for w, p in sorted(by_week.items()):
            predictions.append(_prediction(name, p, at + w * week, at + w * week, simulated))
    for w, p in sorted(forecast.deterioration.items()):
        predictions.append(_prediction("deterioration", p, at, at + w * week, simulated))
    severity = resource_id(fid, "severity", estimate.last_seq)
    basis = [f"Observation/{severity}"] + [
        f"Observation/{oid}" for oid in phq9_observations[-MAX_BASIS:]
    ]
    method = (
        f"Model-derived: Novamind digital twin (model {estimate.model_version}), posterior and "
        f"{len(forecast.weeks)}-week forecast under continued care"
    )
    return checked({
        "resourceType": "RiskAssessment",
        "id": resource_id(fid, "risk", estimate.last_seq),
        "meta": {"tag": [_TAG]},
        "status": "final",
        "method": novamind_concept("twin-forecast", method),
        "subject": subject(fid),
        "occurrenceDateTime": iso_instant(at),
        "basis": [{"reference": reference} for reference in basis],
        "prediction": predictions,
    })  # fmt: skip


def estimate_resources(
    patient_id: str,
    enrolment: datetime,
    estimate: Estimate,
    forecast: Forecast,
    phq9_observations: Sequence[str],
) -> list[dict[str, Any]]:
    """The severity Observation and the RiskAssessment of one posterior, in that order."""
    return [
        severity_observation(patient_id, enrolment, estimate),
        risk_assessment(patient_id, enrolment, estimate, forecast, phq9_observations),
    ]
