"""Patients: the opaque patient id, and identifiers validated and never echoed in errors.

Identifiers are PHI: they are only ever stored sealed under the patient's data key
(:mod:`twin.patient_registry`); everything else in the system is keyed by the opaque patient
id, which reveals nothing about the patient.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass

from twin import errors

__all__ = [
    "DATA_KEY_DAMAGED",
    "ERASED",
    "PATIENT_ID",
    "Identifiers",
    "is_patient_id",
    "new_patient_id",
]


#: Why a write for an erased patient is refused (an event, a data key, identifier links): the
#: message of a ``KeyAccessError`` (HTTP 410).
ERASED = "the patient was erased: nothing more is stored for them"
#: Why data cannot be opened although nothing was erased: the message of a
#: ``DataKeyDamagedError`` (HTTP 503).
DATA_KEY_DAMAGED = (
    "the wrapped data key is stored but does not open under the key-encryption key it names "
    "(its bytes damaged, wrapped for another patient, or that key is not the one it was "
    "wrapped under): no erasure took place"
)
#: The form of a patient id (what the registry issues, and what any store accepts as one).
PATIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def new_patient_id() -> str:
    """A new opaque patient id (random, reveals nothing about the patient)."""
    return "pt_" + uuid.uuid4().hex


def is_patient_id(value: object) -> bool:
    """Whether ``value`` has the form of a patient id (1-64 letters, digits, ``_``, ``-``)."""
    return isinstance(value, str) and PATIENT_ID.fullmatch(value) is not None


def _text(field: str, value: object, limit: int, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        # The value itself is PHI: the error names the field and the rule only.
        raise errors.ObservationRangeError(field, "<redacted>", f"text of 1..{limit} characters")


@dataclass(frozen=True, slots=True)
class Identifiers:
    """Direct identifiers of a patient (HIPAA Safe Harbor kinds kept by the registry).

    Attributes:
        name: Full name.
        birth_date: ISO date ``YYYY-MM-DD``, not in the future.
        mrn: Medical record number.
        contact: Phone or e-mail, optional.
        enrolled_at: The instant the patient's twin starts (ISO 8601 with a UTC offset): day 0
            of their time axis. ``None`` for a patient registered before enrolment was kept.
        external: External identifiers ``(system, value)`` the registry links the patient by
            (kept sealed so that the links can be rebuilt under a new key), at most 32.
    """

    name: str
    birth_date: str
    mrn: str
    contact: str | None = None
    enrolled_at: str | None = None
    external: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        # Opened from JSON, the pairs come back as lists.
        object.__setattr__(self, "external", tuple(tuple(pair) for pair in self.external))
        if len(self.external) > 32 or any(
            len(pair) != 2 or not all(isinstance(p, str) and 0 < len(p) <= 255 for p in pair)
            for pair in self.external
        ):
            raise errors.ObservationRangeError(
                "patient.external", "<redacted>", "at most 32 (system, value) pairs of 1..255"
            )
        _text("patient.name", self.name, 200)
        _text("patient.mrn", self.mrn, 64)
        _text("patient.contact", self.contact, 200, optional=True)
        try:
            born = dt.date.fromisoformat(self.birth_date)
        except (TypeError, ValueError):
            raise errors.ObservationRangeError(
                "patient.birth_date", "<redacted>", "ISO date YYYY-MM-DD"
            ) from None
        if born > dt.date.today() or born.year < 1900:
            raise errors.ObservationRangeError(
                "patient.birth_date", "<redacted>", "a date between 1900 and today"
            )
        if self.enrolled_at is not None:
            self.enrolment()

    def enrolment(self) -> dt.datetime | None:
        """``enrolled_at`` as an aware instant (UTC), or ``None``.

        Raises:
            ObservationRangeError: Not an ISO 8601 date-time with a UTC offset.
        """
        if self.enrolled_at is None:
            return None
        try:
            when = dt.datetime.fromisoformat(self.enrolled_at)
        except (TypeError, ValueError):
            when = None
        if when is None or when.tzinfo is None:
            raise errors.ObservationRangeError(
                "patient.enrolled_at", "<redacted>", "ISO 8601 date-time with a UTC offset"
            )
        return when.astimezone(dt.UTC)
