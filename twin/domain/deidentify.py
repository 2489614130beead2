"""What researchers see: keyed pseudonyms, shifted dates, no identifiers.

- Pseudonym: ``rs_`` + HMAC-SHA256(research key, patient id), truncated to 96 bits. Stable per
  patient for one key, unlinkable to the patient id without the key; rotating the key re-keys
  every study.
- Dates: shifted by a per-patient offset of 1..365 days (sign included) derived from the same
  HMAC, so intervals within a patient are preserved and calendar dates are not.
- Ages: years, with ages over 89 aggregated as ``"90+"`` (HIPAA Safe Harbor).
- Direct identifiers (name, birth date, MRN, contact) and the patient id itself never appear:
  :func:`research_record` builds its output from an allow-list of fields.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from typing import Any

from twin import errors

__all__ = ["PSEUDONYM_LENGTH", "PSEUDONYM_PREFIX", "Deidentifier"]

MIN_KEY_BYTES = 32
#: A pseudonym is this prefix and 96 bits of the HMAC in hex.
PSEUDONYM_PREFIX = "rs_"
PSEUDONYM_LENGTH = len(PSEUDONYM_PREFIX) + 24


class Deidentifier:
    """Keyed pseudonymisation for researcher access.

    Args:
        key: The research key (>= 32 bytes), held by the service, never by researchers.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise errors.ConfigurationError("the research key must be at least 32 bytes")
        self._key = key

    def _mac(self, purpose: str, patient_id: str) -> bytes:
        return hmac.new(self._key, f"{purpose}|{patient_id}".encode(), hashlib.sha256).digest()

    def pseudonym(self, patient_id: str) -> str:
        """The patient's research pseudonym."""
        return PSEUDONYM_PREFIX + self._mac("pseudonym", patient_id)[:12].hex()

    def date_shift_days(self, patient_id: str) -> int:
        """The patient's date offset, ±1..365 days."""
        raw = int.from_bytes(self._mac("date-shift", patient_id)[:4], "big")
        magnitude = 1 + raw % 365
        return magnitude if raw & (1 << 31) else -magnitude

    def shift(self, patient_id: str, day: dt.date) -> dt.date:
        """A date as the researcher sees it."""
        return day + dt.timedelta(days=self.date_shift_days(patient_id))

    @staticmethod
    def age(birth_date: dt.date, on: dt.date) -> int | str:
        """Age in whole years on ``on``; ``"90+"`` beyond 89 (Safe Harbor)."""
        years = (
            on.year - birth_date.year - ((on.month, on.day) < (birth_date.month, birth_date.day))
        )
        return "90+" if years > 89 else years

    def research_record(
        self,
        patient_id: str,
        *,
        birth_date: dt.date,
        enrolled_on: dt.date,
        measures: dict[str, float | int | str | None],
    ) -> dict[str, Any]:
        """One de-identified row: pseudonym, age, shifted enrolment date and the given measures.

        ``measures`` must hold model outputs only (severity, probabilities, flags); keys that
        look like identifiers are refused.
        """
        forbidden = {"patient_id", "name", "mrn", "contact", "birth_date", "email", "phone"}
        leaked = forbidden & set(measures)
        if leaked:
            raise errors.InvalidInputError(
                f"identifier fields in research measures: {sorted(leaked)}"
            )
        return {
            "pseudonym": self.pseudonym(patient_id),
            "age": self.age(birth_date, enrolled_on),
            "enrolled_on": self.shift(patient_id, enrolled_on).isoformat(),
            **measures,
        }
