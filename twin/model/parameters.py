"""Population parameters of the twin model (``docs/model.md`` §6).

The drug table (§4.1) is :mod:`twin.domain.drugs`. Every number
carries its anchor; values marked *[assumption]* are not measured quantities and are listed as
such in docs/model.md §6. Parameters are plain Python floats on purpose: with NumPy 2's
weak scalar promotion they keep float32 particle arrays in float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["MODEL_VERSION", "PopulationParameters"]

#: Version of the model's equations and state layout. Serialized state records it; a change in
#: equations or layout bumps it so old checkpoints are refused rather than misread.
MODEL_VERSION = "novamind-twin/1.4"


@dataclass(frozen=True, slots=True)
class PopulationParameters:
    """Population priors and fixed constants of the twin model (units in each field's comment).

    Rates are per day unless the name says otherwise. Severity numbers are PHQ-9 points.
    """

    # Regime switching (docs/model.md §2.2, §6).
    h10: float = 0.0026  # untreated recovery hazard /d (Whiteford 2013; range 0.0015-0.003)
    # Recovery-hazard multiplier at trial-like care (c = 1) [assumption, calibrated: T1, T8].
    m_care: float = 2.0
    m_drug: float = 1.2  # drug multiplier on the recovery hazard (calibrated: T2-T5)
    h01: float = 0.00145  # relapse hazard /d, recently remitted, off drug (Geddes 2003)
    hr_drug: float = 0.376  # maintenance hazard ratio (Geddes 2003; Kato 2021)
    # Relapse-hazard multiplier just after the capped drive falls by 1 (stopping a drug taken at
    # or above D_min); 1 = none (Andrews 2011; Viguera 1998) [calibrated: T8, T10].
    m_stop: float = 1.0
    tau_stop: float = 90.0  # days for that excess to fall by e [assumption: Viguera 1998]
    beta_q: float = 0.45  # log-hazard of new episode per z of insomnia above 0 (T14, Baglioni 2011)
    # Course heterogeneity (twin.model.covariates): an acute and a chronic course class.
    chronic_share: float = 0.25  # share of new episodes with a chronic course [calibrated]
    rec_acute: float = 1.0  # recovery-hazard multiplier of the acute class [calibrated]
    rec_chronic: float = 1.0  # recovery-hazard multiplier of the chronic class [calibrated]
    p_anx_chronic: float = 0.5  # P(comorbid anxiety | chronic course) [calibrated: Penninx 2011]
    p_anx_acute: float = 0.5  # P(comorbid anxiety | acute course) [calibrated: Penninx 2011]
    hr_recurrence: float = 1.16  # relapse-hazard ratio per prior episode (Solomon 2000)
    prior_episodes_mean: float = 1.5  # mean earlier episodes of a patient [assumption]
    # Severity OU (docs/model.md §2.3).
    kappa_s: float = 1.0 / 3.0  # mean reversion /d
    sigma_s: float = 2.0  # stationary SD, points
    recall_days: float = 7.0  # EWMA time constant of the 14-day recall window (same mean age)
    # Anxiety OU.
    g1: float = 0.6  # GAD-7 points per PHQ-9 point above mu_well [assumption]
    gamma_g: float = 0.8  # share of the drug effect acting on anxiety [assumption]
    sigma_g: float = 1.8  # stationary SD, GAD-7 points [assumption]
    rho_sg: float = 0.5  # correlation of S and G innovations [assumption]
    # EMA affect (continuous time, hours).
    kappa_a_per_h: float = 0.4  # lag-1 0.20-0.33 at 3 h spacing (Kuppens 2010)
    kappa_a_severity: float = 0.15  # fall of log attractor strength per z_S [assumption]
    sigma_a: float = 1.0  # stationary SD, z-units
    beta_a: float = 0.5  # home-base shift per 5 PHQ-9 points above mu_well
    ema_noise: float = 0.5  # response noise of the ordinal item, z-units [assumption]
    ema_cuts: tuple[float, ...] = (-1.5, -0.9, -0.3, 0.3, 0.9, 1.5)  # 1..7 Likert thresholds
    # Pharmacodynamics (docs/model.md §4.2).
    o_max: float = 0.88  # maximal SERT occupancy (Meyer 2004; Voineskos 2007)
    ed50_rel: float = 0.10  # exposure at half-maximal occupancy, in D_min units
    u_cap: float = 1.1  # cap on the normalised drive u = O/O(1)
    e_max: float = 2.0  # mean maximal drug effect, points (Stone 2022; range 1.0-2.5)
    # CV of the log-normal drug sensitivity eta_i. Raised from the sketch's 1.0: the floor at
    # PHQ-9 0 compresses drug-arm variance (VR 0.93 at CV 1); a heavy tail restores VR ~0.98 and
    # matches the large-response class of Stone 2022 (24.5% drug vs 9.6% placebo).
    eta_cv: float = 2.2
    tau_e: float = 3.0  # effect-compartment lag, days (Taylor 2006 onset; range 3-10)
    # Care / placebo.
    pi_mean: float = 5.0  # mean care effect, points (Furukawa 2016)
    pi_sd: float = 4.0
    tau_p: float = 5.0  # days (Wagner 2017 early improvement)
    # Psychotherapy (Howard 1986; Cuijpers 2023).
    psi_max: float = 7.0  # points at saturation (16 sessions: SMD ~0.5, T12)
    howard_s: float = 1.75  # probit slope in log sessions, s = ln(26/8)/z_0.75
    howard_n50: float = 8.0  # sessions for 50% of the effect
    tau_k: float = 540.0  # decay of effective sessions between courses, days
    # Sleep (Borbely 1982; Daan et al. 1984) and insomnia.
    tau_rise_h: float = 18.2
    tau_fall_h: float = 4.2
    tau_l: float = 10.0  # sleep-debt memory, days [assumption]
    tau_q: float = 7.0  # insomnia relaxation, days [assumption]
    sigma_q: float = 0.15  # daily insomnia innovation, z [assumption]
    q_sd: float = 0.8  # between-person SD of insomnia baseline q_i [assumption]
    # Insomnia z per 5 points of depression above mu_well. Kept small: a strong S->Q->S loop
    # (c_SQ·c_Q/5) slows early improvement below Wagner 2017 (T6) [assumption, calibrated].
    c_sq: float = 0.05
    c_q: float = 4.5  # PHQ-9 points per z of insomnia above q0 (calibrated: T13 depression SMD)
    c_l: float = 0.12  # insomnia z added per day per unit of sleep debt [assumption]
    i_max: float = 0.65  # CBT-I effect on insomnia at 6 sessions, z (T13, Lee 2023)
    cbti_sessions: float = 6.0
    # Discontinuation (Henssler 2024).
    omega_p: float = 0.15  # share of patients susceptible
    k_w: float = 4.0  # points per unit drop of drive [assumption]
    tau_w: float = 7.0
    # Baseline severity priors.
    mu_ep_mean: float = 15.0
    mu_ep_sd: float = 4.0
    mu_well_mean: float = 2.5
    mu_well_sd: float = 1.5
    g0_mean: float = 3.0
    g0_sd: float = 1.5
    alpha_sd: float = 0.5  # between-person SD of the EMA home base, z
    # The clinician-rated 17-item HAM-D as a second observation model (twin.model.scales).
    # Linking through QIDS-SR16, which shares the PHQ-9's range and severity thresholds: QIDS-SR16
    # 5/10/15/20 = HRSD-17 7/13/18.5/25 (Rush et al. 2003), a line of slope 1.2 through 7 at 5.
    hamd_intercept: float = 1.0  # HAM-D points at PHQ-9 true score 0
    hamd_slope: float = 1.2  # HAM-D points per PHQ-9 point
    hamd_sd: float = 2.5  # rater error, HAM-D points [assumption]
    hamd_care_share: float = 0.0  # extra share of the care effect seen by raters [calibrated]
    hamd_drug_share: float = 0.0  # extra share of the drug effect seen by raters [calibrated]
    # Observation noise (docs/model.md §5).
    phq9_sd: float = 2.2  # Lowe 2004
    gad7_sd: float = 2.0  # [assumption]
    sleep_sd_h: float = 0.8
    sleep_loading_h: float = 0.5  # hours of sleep lost per z of insomnia
    steps_sd: float = 0.4  # log-steps
    steps_loading: float = 0.13  # log-steps per z_S (Burton 2013)
    hr_sd: float = 5.0  # bpm
    hr_loading: float = 0.8  # bpm per z_S [assumption]
    rmssd_sd: float = 0.3  # ln ms
    rmssd_loading: float = 0.06  # ln ms per z_S (Koch 2019, weak)
    # Population distribution of wearable person baselines (used for simulation and as priors
    # before a twin's run-in completes) [assumption].
    sleep_mean_h: float = 7.2
    sleep_between_sd_h: float = 0.7
    steps_log_mean: float = 8.7  # ln(6000)
    steps_between_sd: float = 0.5  # Burton 2013 derivation above
    hr_mean: float = 68.0
    hr_between_sd: float = 8.0
    rmssd_mean: float = 3.5
    rmssd_between_sd: float = 0.5
    # Adherence persistence in usual care (Olfson 2006): 42% stop by 30 d, 72% by 90 d.
    stop_hazard_first30: float = -math.log(0.58) / 30.0
    stop_hazard_after30: float = -math.log(0.28 / 0.58) / 60.0

    @property
    def h_bed_norm(self) -> float:
        """Process S at bedtime on the settled 16/8 h cycle (≈ 0.62).

        H_bed = (1 - a)/(1 - a·b) with a = e^{-16/τ_rise}, b = e^{-8/τ_fall}.
        """
        a = math.exp(-16.0 / self.tau_rise_h)
        b = math.exp(-8.0 / self.tau_fall_h)
        return (1.0 - a) / (1.0 - a * b)

    @property
    def h_wake_norm(self) -> float:
        """Process S at wake time on the settled 16/8 h cycle (≈ 0.09)."""
        return self.h_bed_norm * math.exp(-8.0 / self.tau_fall_h)
