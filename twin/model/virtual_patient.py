"""Synthetic patients: a true latent trajectory from the model's prior, and its observations.

Used for synthetic-twin calibration (simulate truth from the prior, assimilate the observations,
check forecast coverage), for the benchmark's workload and for the demo. The truth is drawn with
the same day step and observation models the twin assimilates with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from twin.domain import events
from twin.domain.drugs import drug
from twin.model import dynamics, likelihood
from twin.model.dynamics import Row
from twin.model.inputs import InputTracker
from twin.model.parameters import PopulationParameters

__all__ = ["SyntheticPatient", "synthetic_patient"]


@dataclass
class SyntheticPatient:
    """A simulated patient.

    Attributes:
        events: The observable event log (sequence numbers from 1).
        severity: True latent severity per day, shape (days + 1,).
        phq9: True observable PHQ-9 totals drawn every day (for coverage checks), (days + 1,).
    """

    events: list[events.Event] = field(default_factory=list)
    severity: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros(0, np.float32))
    phq9: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))


def synthetic_patient(
    seed: int,
    *,
    days: int,
    phq9_every: int = 7,
    ema_per_day: int = 0,
    wearables: bool = False,
    drug_name: str | None = None,
    mg_per_day: float = 0.0,
    drug_from_day: int = 0,
    p_episode: float = 0.7,
    params: PopulationParameters | None = None,
) -> SyntheticPatient:
    """Simulate one patient from the prior and emit their observations as events.

    Args:
        seed: Random seed.
        days: Days to simulate.
        phq9_every: PHQ-9 every k days from day 0 (0: never).
        ema_per_day: EMA beeps per day, 3 hours apart from 09:00.
        wearables: Emit sleep, steps, resting HR and ln RMSSD each day.
        drug_name: A drug prescribed from ``drug_from_day`` (doses taken, logged).
        mg_per_day: Its daily dose.
        drug_from_day: Day of the prescription.
        p_episode: Probability that the patient starts in an episode.
        params: Population parameters.
    """
    p = params or PopulationParameters()
    rng = np.random.Generator(np.random.Philox(key=seed))
    X = dynamics.sample_prior(p, (1,), rng, p_episode=p_episode)
    tracker = InputTracker()
    bases = {
        "sleep": rng.normal(p.sleep_mean_h, p.sleep_between_sd_h),
        "steps": rng.normal(p.steps_log_mean, p.steps_between_sd),
        "hr": rng.normal(p.hr_mean, p.hr_between_sd),
        "rmssd": rng.normal(p.rmssd_mean, p.rmssd_between_sd),
    }
    out = SyntheticPatient(
        severity=np.empty(days + 1, np.float32), phq9=np.empty(days + 1, np.int64)
    )
    ema_hour = 0.0
    timeline: list[tuple[float, events.Payload]] = []

    def emit(day: float, payload: events.Payload) -> None:
        timeline.append((day, payload))

    cuts27 = likelihood.score_cuts(27)
    # The patient is seen in a trial-like setting (weekly contact): the care input of the truth.
    emit(0.0, events.CareStatus(True, "trial"))
    for day in range(days + 1):
        out.severity[day] = X[Row.S, 0]
        out.phq9[day] = likelihood.sample_ordinal(
            X[Row.M_S], p.phq9_sd, cuts27, rng.standard_normal(1)
        )[0]
        if drug_name is not None and day == drug_from_day:
            emit(day + 0.01, events.Prescription(drug_name, mg_per_day))
        if phq9_every and day % phq9_every == 0:
            emit(day + 0.3, events.Phq9(int(out.phq9[day])))
        if wearables:
            z = float(likelihood.severity_z(X[Row.S], X[Row.MU_WELL])[0])
            dq = float(X[Row.Q, 0] - X[Row.Q0, 0])
            sleep = bases["sleep"] - p.sleep_loading_h * dq + p.sleep_sd_h * rng.standard_normal()
            steps = bases["steps"] - p.steps_loading * z + p.steps_sd * rng.standard_normal()
            emit(day + 0.05, events.SleepDuration(float(np.clip(sleep, 0.0, 16.0))))
            emit(day + 0.2, events.Steps(int(np.clip(math.expm1(steps), 0, 100_000))))
            hr = bases["hr"] + p.hr_loading * z + p.hr_sd * rng.standard_normal()
            emit(day + 0.21, events.RestingHeartRate(float(np.clip(hr, 25.0, 220.0))))
            rm = bases["rmssd"] - p.rmssd_loading * z + p.rmssd_sd * rng.standard_normal()
            emit(day + 0.22, events.LnRmssd(float(np.clip(rm, 0.0, math.log(300.0)))))
        for beep in range(ema_per_day):
            hour = 24.0 * day + 9.0 + 3.0 * beep
            dynamics.ema_advance(
                X, hour - ema_hour, p, normal=rng.standard_normal(1, dtype=np.float32)
            )
            ema_hour = hour
            rating = likelihood.sample_ordinal(
                X[Row.A], p.ema_noise, p.ema_cuts, rng.standard_normal(1)
            )[0]
            emit(hour / 24.0, events.EmaAffect(int(rating) + 1))
        if day == days:
            break
        on_drug = drug_name is not None and day >= drug_from_day
        if on_drug:
            emit(day + 0.5, events.DoseTaken(drug_name, True))  # type: ignore[arg-type]
        k_e = drug(drug_name).k_e if drug_name is not None else 0.0
        dose = mg_per_day / drug(drug_name).min_dose_mg if on_drug and drug_name else 0.0
        inputs = dynamics.DayInputs(
            care=1.0,
            dose_rel=np.array([[dose], [0.0]]),
            taken=np.array([[1.0], [1.0]]),
            p_adh=1.0,
            k_e=np.array([[k_e], [0.0]]),
            psi=tracker.psi(p),
            cbti=tracker.cbti(p),
            sleep_debt=tracker.sleep_debt,
        )
        dynamics.day_step(
            X,
            inputs,
            p,
            normals=rng.standard_normal((dynamics.N_NORMALS, 1), dtype=np.float32),
            uniforms=rng.random((dynamics.N_UNIFORMS, 1), dtype=np.float32),
        )
        tracker.end_day(p)
    timeline.sort(key=lambda item: item[0])  # stable: same-time events keep their order
    out.events = [events.Event(seq, day, payload) for seq, (day, payload) in enumerate(timeline, 1)]
    return out
