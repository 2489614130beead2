"""Patient covariates: how a patient's characteristics shift the expected course.

Two per-patient static parameters carry them (rows of the particle matrix):

- ``CHRONIC``, the **course class**: a depressive episode follows an acute course or a chronic
  one, with recovery hazards h10·r_acute and h10·r_chronic (``rec_acute``, ``rec_chronic``). In
  new episodes a share ``chronic_share`` is chronic. The class is inferred from the course the
  twin observes, and from two covariates through Bayes' rule:
  - **episode duration** D (weeks in the current episode at baseline): an episode that has
    already lasted D weeks is likelier to be chronic, by the likelihood ratio of having stayed
    in the episode that long untreated, exp(-(h_chronic - h_acute)·7D);
  - **comorbid anxiety**: P(anxiety | chronic) = ``p_anx_chronic``, P(anxiety | acute) =
    ``p_anx_acute`` (two-year chronicity 57 % with comorbid anxiety against 25 % without;
    Penninx et al. 2011).
- ``LOG_RELAPSE``, the log multiplier of the relapse hazard h01 from **prior episodes** k: each
  earlier episode raises the risk of recurrence by the factor ``hr_recurrence`` (Solomon et al.
  2000), ln HR·min(k, :data:`MAX_COUNTED_EPISODES`) - ln E[HR^min(K, cap)], centred so that the
  population's mean hazard stays h01. Unknown k is drawn from a geometric distribution with mean
  ``prior_episodes_mean``.

**Baseline severity** is the first PHQ-9 the twin observes (the episode level μ_ep is learnt from
it). **Age** is accepted and has no effect on the course: it did not predict outcome in an
individual-patient meta-analysis of primary-care trials (Buckman et al. 2021).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import special

from twin.model.parameters import PopulationParameters

__all__ = [
    "MAX_COUNTED_EPISODES",
    "chronic_log_likelihood_ratio",
    "chronic_probability",
    "draw_prior_episodes",
    "relapse_offset",
]

#: Prior episodes beyond this count add no further risk (the published gradient covers few).
MAX_COUNTED_EPISODES = 10
F64 = npt.NDArray[np.float64]


def chronic_log_likelihood_ratio(
    p: PopulationParameters,
    *,
    episode_weeks: npt.ArrayLike | None = None,
    anxiety_comorbid: npt.ArrayLike | None = None,
) -> F64:
    """Ln P(covariates | chronic) - ln P(covariates | acute), for the covariates given.

    ln LR = -(h_chronic - h_acute)·7·D  (D weeks already in the episode, untreated hazards)
          + ln(p_anx_chronic / p_anx_acute)          with comorbid anxiety
          + ln((1 - p_anx_chronic) / (1 - p_anx_acute))  without

    Args:
        p: Population parameters.
        episode_weeks: D, weeks (``None``: not known).
        anxiety_comorbid: Comorbid anxiety disorder, bool (``None``: not known).

    Returns:
        The log-likelihood ratio, float64, the broadcast shape of the covariates given.
    """
    llr = np.zeros(())
    if episode_weeks is not None:
        weeks = np.asarray(episode_weeks, dtype=np.float64)
        llr = llr - p.h10 * (p.rec_chronic - p.rec_acute) * 7.0 * weeks
    if anxiety_comorbid is not None:
        anxious = np.asarray(anxiety_comorbid, dtype=np.bool_)
        with_anxiety = math.log(p.p_anx_chronic / p.p_anx_acute)
        without = math.log((1.0 - p.p_anx_chronic) / (1.0 - p.p_anx_acute))
        llr = llr + np.where(anxious, with_anxiety, without)
    return np.asarray(llr, dtype=np.float64)


def chronic_probability(p: PopulationParameters, llr: npt.ArrayLike) -> F64:
    """P(chronic | covariates): logit = logit(``chronic_share``) + ``llr``."""
    prior = math.log(p.chronic_share / (1.0 - p.chronic_share))
    out: F64 = special.expit(prior + np.asarray(llr, dtype=np.float64))
    return out


def _geometric_q(p: PopulationParameters) -> float:
    """Q of P(K = k) = (1 - q)·q^k with mean q/(1 - q) = ``prior_episodes_mean``."""
    mean = p.prior_episodes_mean
    return mean / (1.0 + mean)


def relapse_offset(p: PopulationParameters, prior_episodes: npt.ArrayLike) -> F64:
    """LOG_RELAPSE for ``prior_episodes`` earlier episodes.

    ln HR·min(k, cap) - ln E[HR^min(K, cap)], K ~ Geometric(mean ``prior_episodes_mean``): the
    population mean of the multiplier e^{LOG_RELAPSE} is 1, so h01 keeps its calibrated meaning.
    """
    k = np.minimum(np.asarray(prior_episodes, dtype=np.float64), MAX_COUNTED_EPISODES)
    q = _geometric_q(p)
    hr = p.hr_recurrence
    # E[HR^min(K, cap)] = Σ_{k<cap} (1-q) q^k HR^k + q^cap HR^cap.
    head = sum((1.0 - q) * q**j * hr**j for j in range(MAX_COUNTED_EPISODES))
    mean = head + q**MAX_COUNTED_EPISODES * hr**MAX_COUNTED_EPISODES
    out: F64 = math.log(hr) * k - math.log(mean)
    return out


def draw_prior_episodes(
    mean: float, rng: np.random.Generator, shape: tuple[int, ...]
) -> npt.NDArray[np.int64]:
    """Prior-episode counts K ~ Geometric on {0, 1, ...} with the given mean (>= 0)."""
    q = mean / (1.0 + mean)
    # numpy's geometric counts trials to the first success (support 1, 2, ...).
    drawn: npt.NDArray[np.int64] = rng.geometric(1.0 - q, shape) - 1
    return drawn
