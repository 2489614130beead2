"""What researchers see: keyed pseudonyms, days counted from each patient's own record.

- Pseudonym: ``rs_`` + HMAC-SHA256(research key, patient id), truncated to 96 bits. Stable per
  patient for one key, unlinkable to the patient id without the key; rotating the key re-keys
  every study.
- Time: a twin's day counts from the patient's enrolment, a calendar instant, so a day is a
  date. Researchers get :func:`record_day` instead: days since the
  patient's first event. Intervals within a patient are kept; nothing ties a day to the
  calendar.
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

from twin import errors

__all__ = ["LINK_PREFIX", "PSEUDONYM_LENGTH", "PSEUDONYM_PREFIX", "Deidentifier", "record_day"]

MIN_KEY_BYTES = 32
#: A pseudonym is this prefix and 96 bits of the HMAC in hex.
PSEUDONYM_PREFIX = "rs_"
PSEUDONYM_LENGTH = len(PSEUDONYM_PREFIX) + 24
#: An identifier link is this prefix and the whole HMAC in hex.
LINK_PREFIX = "il_"


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
