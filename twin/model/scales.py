"""Clinician-rated depression scales: which scale a measurement speaks, and how it is simulated.

The twin's severity S is the PHQ-9 true score, and the PHQ-9 is self-report. Many published
outcomes are clinician ratings (HAM-D, MADRS) and behave differently: raters assess the last
week at a visit, and trials select patients on the rating itself, so its baseline is inflated by
selection and its spread restricted (regression to the mean acts on the screened scale only).
Within-group change in placebo arms is about three times larger in SD units on observer scales
than on self-report (d 1.85 against 0.67; Rief et al. 2009).

**The stated method.** A clinician rating is a second observation model of the same latent
severity, not a conversion of its published value: the 17-item HAM-D of a patient is an
interval-censored Gaussian on 0..52 around a linear link of the recalled severity,

    HAM-D ~ round(a_H + b_H·(M_S - ρ_P·P - ρ_E·E) + σ_H·ξ), clipped to 0..52,

with M_S the recall mean of S (as for the PHQ-9), b_H and a_H equating the two scales in
depressed samples, σ_H the rater's error (``hamd_intercept``, ``hamd_slope``, ``hamd_sd``), and
ρ_P·P and ρ_E·E the parts of the care effect P and of the drug effect E that a rater sees beyond
what the patient reports (``hamd_care_share``, ``hamd_drug_share``): improvement under the
attention of visits is larger on observer ratings than on self-report (placebo arms: Rief et
al. 2009), and so is the drug's advantage (patients' own ratings showed little of it; Greenberg
et al. 1992; in primary care, PANDA's PHQ-9 ratio of 0.95 at six weeks).
A target measured on the HAM-D (response, remission, change) is computed on simulated HAM-D
ratings, with the trial's screen applied to the rating when the trial screened on it.

Self-report questionnaires other than the PHQ-9 (SCL-20, HSCL-20, BDI-II) are taken as the
PHQ-9: same rater, same construct. Relative change (response: a fall of at least half) is
compared directly, and remission at each scale's published threshold is compared with PHQ-9
below 5 (the PHQ-9's own remission threshold; Kroenke et al. 2001).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from twin.model import likelihood
from twin.model.parameters import PopulationParameters

__all__ = ["HAMD17_TOP", "Scale", "hamd17"]

#: The scales a validation target may speak.
Scale = Literal["PHQ-9", "HAM-D", "self-report", "diagnosis"]
#: Top score of the 17-item HAM-D.
HAMD17_TOP = 52


def hamd17(
    recall_mean: npt.NDArray[np.floating],
    care_effect: npt.NDArray[np.floating],
    drug_effect: npt.NDArray[np.floating],
    p: PopulationParameters,
    normal: npt.NDArray[np.floating],
) -> npt.NDArray[np.int64]:
    """Simulated 17-item HAM-D ratings of patients with recall-mean severity ``recall_mean``.

    HAM-D = clip(⌈a_H + b_H·(M_S - ρ_P·P - ρ_E·E) + σ_H·ξ - ½⌉, 0, 52) (module docstring).

    Args:
        recall_mean: M_S, PHQ-9 points, any shape.
        care_effect: The care effect P, PHQ-9 points, the shape of ``recall_mean``.
        drug_effect: The drug effect E, PHQ-9 points, the shape of ``recall_mean``.
        p: Population parameters (``hamd_intercept``, ``hamd_slope``, ``hamd_sd``,
            ``hamd_care_share``, ``hamd_drug_share``).
        normal: Standard normal draws, the shape of ``recall_mean``.

    Returns:
        Ratings 0..52, int64.
    """
    seen = (
        np.asarray(recall_mean, dtype=np.float64)
        - p.hamd_care_share * np.asarray(care_effect, dtype=np.float64)
        - p.hamd_drug_share * np.asarray(drug_effect, dtype=np.float64)
    )
    mean = p.hamd_intercept + p.hamd_slope * seen
    return likelihood.sample_score(mean, p.hamd_sd, HAMD17_TOP, np.asarray(normal))
