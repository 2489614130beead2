"""Patient identifiers: validated, and never echoed in errors (they are PHI).

Identifiers are only ever stored sealed under the patient's data key; everything else in the
system is keyed by the opaque patient id.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from twin import errors

__all__ = ["Identifiers"]


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
    """

    name: str
    birth_date: str
    mrn: str
    contact: str | None = None

    def __post_init__(self) -> None:
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
