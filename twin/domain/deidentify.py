"""What researchers see: keyed pseudonyms, days counted from each patient's own record.

- Pseudonym: ``rs_`` + HMAC-SHA256(research key, patient id), truncated to 96 bits. Stable per
  patient for one key, unlinkable to the patient id without the key; rotating the key re-keys
  every study.
- Time: a twin's day counts from the patient's enrolment, a calendar instant, so a day is a
  date. Researchers get :func:`record_day` instead: days since the
  patient's first event. Intervals within a patient are kept; nothing ties a day to the
  calendar.
- Dates: where a research output gives a date, it is shifted (:meth:`Deidentifier.shifted_date`):
  every date of one patient moves by the same whole number of days, 1 to
  :data:`MAX_DATE_SHIFT_DAYS` earlier or later, drawn from
  ``HMAC-SHA256(research key, "date-shift|" + patient id)``. Intervals and record days are
  kept, and one patient's shift says nothing about another's. The key alone does not hide the
  shift: a live listing's latest date is close to the day it is read, so a researcher learns
  the shift to within how long ago the twin was last updated. Shifted dates are therefore an
  opt-in for releases under an expert determination (45 CFR 164.514(b)(1)) that accepts this,
  not Safe Harbor, which removes every date element but the year; the default,
  ``dates="relative"``, keeps to record days (docs/time.md, "Research outputs").
- Direct identifiers (name, birth date, MRN, contact) and the patient id itself never appear:
  research outputs are built from allow-listed model outputs.
- Identifier links: the registry finds a patient by an external identifier (an MRN with its
  system) through ``HMAC-SHA256(research key, "identifier|" + JSON [system, value])``, never
  the identifier itself, so the table of links is no list of MRNs. The purpose prefix keeps
  links and pseudonyms apart; rotating the key needs the links rebuilt from the sealed
  identifiers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from datetime import UTC, date, datetime, timedelta
from typing import Literal, get_args

from twin import errors

__all__ = [
    "LINK_PREFIX",
    "MAX_DATE_SHIFT_DAYS",
    "PSEUDONYM_LENGTH",
    "PSEUDONYM_PREFIX",
    "Deidentifier",
    "ResearchDates",
    "record_day",
]

MIN_KEY_BYTES = 32
#: A pseudonym is this prefix and 96 bits of the HMAC in hex.
PSEUDONYM_PREFIX = "rs_"
PSEUDONYM_LENGTH = len(PSEUDONYM_PREFIX) + 24
#: An identifier link is this prefix and the whole HMAC in hex.
LINK_PREFIX = "il_"
#: A patient's research dates move by 1 to this many days, earlier or later (half a year: a
#: shown date says neither the real date nor its season).
MAX_DATE_SHIFT_DAYS = 182


#: What research outputs show of time: shifted dates beside the record days (expert
#: determination), or the record days only (Safe Harbor).
ResearchDates = Literal["shifted", "relative"]


class Deidentifier:
    """Keyed pseudonymisation for researcher access.

    Args:
        key: The research key (>= 32 bytes), held by the service, never by researchers.
        dates: ``"relative"``: record days only (:attr:`shows_dates` is false; the default);
            ``"shifted"``: research outputs also show shifted dates.
    """

    def __init__(self, key: bytes, *, dates: ResearchDates = "relative") -> None:
        if len(key) < MIN_KEY_BYTES:
            raise errors.ConfigurationError("the research key must be at least 32 bytes")
        if dates not in get_args(ResearchDates):
            raise errors.ConfigurationError("research dates: shifted or relative")
        self._key = key
        self.shows_dates = dates == "shifted"

    def _mac(self, purpose: str, patient_id: str) -> bytes:
        return hmac.new(self._key, f"{purpose}|{patient_id}".encode(), hashlib.sha256).digest()

    def pseudonym(self, patient_id: str) -> str:
        """The patient's research pseudonym."""
        return PSEUDONYM_PREFIX + self._mac("pseudonym", patient_id)[:12].hex()

    def date_shift(self, patient_id: str) -> int:
        """The patient's date shift: days in ``[-MAX, -1] | [1, MAX]``, never 0.

        Uniform over the ``2 * MAX_DATE_SHIFT_DAYS`` values (the 64-bit draw's modulo bias is
        below 1e-17), the same for every date of the patient, and unknowable without the key.
        """
        draw = int.from_bytes(self._mac("date-shift", patient_id)[:8], "big")
        k = draw % (2 * MAX_DATE_SHIFT_DAYS)
        return k - MAX_DATE_SHIFT_DAYS if k < MAX_DATE_SHIFT_DAYS else k - MAX_DATE_SHIFT_DAYS + 1

    def shifted_date(self, patient_id: str, when: datetime) -> date:
        """The date (UTC) of ``when`` (aware), moved by the patient's :meth:`date_shift`."""
        return when.astimezone(UTC).date() + timedelta(days=self.date_shift(patient_id))

    def identifier_link(self, system: str, value: str) -> str:
        """The registry's link for an external identifier (``system``, ``value``)."""
        # Stripped as every source's reader strips them: " A-1001" and "A-1001" are one MRN.
        text = json.dumps([system.strip(), value.strip()], separators=(",", ":"))
        return LINK_PREFIX + self._mac("identifier", text).hex()


def record_day(day: int, record_start: float | None) -> int | None:
    """A twin's day as researchers see it: whole days since the patient's first event.

    Args:
        day: The twin's day, days since the enrolment (a calendar date in disguise).
        record_start: Day of the patient's first event, days since the origin; ``None`` when
            unknown.

    Returns:
        ``day - floor(record_start)`` (>= 0), or ``None`` when the record's start is unknown
        (never the origin-based day).
    """
    if record_start is None:
        return None
    return max(0, day - math.floor(record_start))
