"""Care intensity: how much clinical contact a patient has, as a daily input c_d in [0, 1].

The nonspecific effect of care (expectancy, support, the attention of being assessed) is not a
switch: trials that see patients more often report more improvement in every arm (Posternak &
Zimmerman 2007: about 0.86 HRSD points per extra assessment visit), and usual care in primary
care sees patients far less often than a trial does. The model therefore takes the **contact
rate** of the patient's setting, in visits per week relative to a trial's weekly assessments:

    c_d = min(contacts per week on day d / 1 per week, 1)

and both parts of the care effect scale with it (see ``twin.model.dynamics.advance_days``): the
care/expectancy offset relaxes toward c_d·π_i (time constant τ_P, so it plateaus and does not
grow for ever), and the recovery hazard is multiplied by 1 + (m_care - 1)·c_d. ``trial`` (c = 1)
is the setting the placebo arms of randomised trials describe, the one the care parameters are
calibrated on; the other settings are the same equations at their own contact rates.

A setting is a contact schedule over the time since it began (:data:`PROFILES`): usual care and
collaborative care see patients more often in the first weeks of a course than later, so their
effect wanes as follow-up thins. Where nothing names the setting, a twin infers c_d from the
contacts it observes (assessments and psychotherapy sessions; see
``twin.assimilation.state.TwinState.care_intensity``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from twin.domain.events import CARE_SETTINGS

__all__ = [
    "CONTACT_MEMORY_DAYS",
    "PROFILES",
    "CareProfile",
    "contact_rate_step",
    "intensity",
]

#: Time constant of the contact-rate average a twin keeps when it infers its setting, days:
#: four weeks, so a monthly visit is seen as a rate and not as a spike.
CONTACT_MEMORY_DAYS = 28.0


@dataclass(frozen=True, slots=True)
class CareProfile:
    """The contact schedule of a care setting.

    Attributes:
        early_per_week: Contacts per week during the first ``early_days`` of the setting.
        later_per_week: Contacts per week after that (maintenance follow-up).
        early_days: Length of the acute phase, days.
        source: Where the schedule comes from.
    """

    early_per_week: float
    later_per_week: float
    early_days: int
    source: str


#: Contact schedules of the settings. ``trial``: weekly assessment visits throughout (the
#: schedule of the acute-phase antidepressant and placebo trials the care parameters are
#: calibrated on). ``usual``: primary-care follow-up after a new episode is recognised: 2.21
#: monitoring visits in the twelve weeks after a new antidepressant start (56,713 US Veterans
#: Affairs patients; Psychiatr Serv 2009;60:439) and 3.41 depression consultations in the first
#: year (Norwegian general practice, 52,606 patients; Ruths et al. 2021, BMC Health Serv Res),
#: so about 1.2 in the 40 weeks after the acute phase. ``collaborative``: a care manager's
#: contact every two weeks in the acute phase with measurement-based stepped care, monthly
#: after (IMPACT and similar programmes). ``none``: no clinical contact.
PROFILES: dict[str, CareProfile] = {
    "none": CareProfile(0.0, 0.0, 0, "no contact"),
    "usual": CareProfile(
        2.2 / 12.0, 1.2 / 40.0, 84, "primary-care follow-up (VA 2009; Ruths 2021)"
    ),
    "collaborative": CareProfile(0.5, 0.25, 84, "care-manager contacts (IMPACT)"),
    "trial": CareProfile(1.0, 1.0, 0, "weekly trial assessments"),
}
assert tuple(PROFILES) == CARE_SETTINGS


def intensity(setting: str, days_since_start: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Care intensity c_d of ``setting`` on days counted from the day it began.

    c_d = min(rate_d / 1 per week, 1), with rate_d the profile's early rate for
    ``days_since_start < early_days`` and its later rate after.

    Args:
        setting: One of :data:`CARE_SETTINGS`.
        days_since_start: Days since the setting began (>= 0), any shape.

    Returns:
        c_d, float64, the shape of ``days_since_start``.
    """
    profile = PROFILES[setting]
    days = np.asarray(days_since_start, dtype=np.float64)
    rate = np.where(days < profile.early_days, profile.early_per_week, profile.later_per_week)
    return np.minimum(rate, 1.0)


def contact_rate_step(rate_per_week: float, contacts: int) -> float:
    """One day of the contact-rate average a twin infers its setting from, contacts/week.

    r_{d+1} = r_d·e^{-1/τ} + 7·min(n_d, 1)·(1 - e^{-1/τ}), τ = :data:`CONTACT_MEMORY_DAYS`:
    an exponential average whose steady state under one contact every k days is 7/k per week
    (several contacts on one day count as one visit).
    """
    decay = math.exp(-1.0 / CONTACT_MEMORY_DAYS)
    return rate_per_week * decay + 7.0 * min(contacts, 1) * (1.0 - decay)
