"""Wire models shared by the HTTP API and the researcher SDK (pydantic, strict, bounded)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AckOut",
    "AlertOut",
    "IngestOut",
    "ObservationBatch",
    "ObservationIn",
    "PatientCreate",
    "PatientCreated",
    "PatientOut",
    "Problem",
    "TwinOut",
]

_STRICT = ConfigDict(extra="forbid", frozen=True)


class Problem(BaseModel):
    """An RFC 9457 problem detail (``application/problem+json``)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None


class PatientCreate(BaseModel):
    """A new patient: identifiers and the owning care team."""

    model_config = _STRICT

    name: str = Field(min_length=1, max_length=200)
    birth_date: str = Field(min_length=10, max_length=10, description="YYYY-MM-DD")
    mrn: str = Field(min_length=1, max_length=64)
    contact: str | None = Field(default=None, max_length=200)
    care_team: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")


class PatientCreated(BaseModel):
    """The opaque id of a new patient."""

    patient_id: str


class PatientOut(BaseModel):
    """A patient as their care team sees them."""

    patient_id: str
    care_team: str
    name: str
    birth_date: str
    mrn: str
    contact: str | None


class ObservationIn(BaseModel):
    """One observation or intervention: ``payload`` is the event codec's form."""

    model_config = _STRICT

    idempotency_key: str = Field(min_length=1, max_length=128)
    day: float = Field(ge=0.0, le=1e6, allow_inf_nan=False)
    payload: dict[str, Any]


class ObservationBatch(BaseModel):
    """Up to 1,000 events in time order."""

    model_config = _STRICT

    items: list[ObservationIn] = Field(min_length=1, max_length=1000)


class AckOut(BaseModel):
    """The acknowledgement of one event."""

    seq: int
    duplicate: bool


class AlertOut(BaseModel):
    """An alert raised by an update."""

    rule: str
    status: str
    severity: str
    seq: int
    detail: str


class IngestOut(BaseModel):
    """Acknowledged sequence numbers and the alerts the events raised."""

    acknowledged: list[AckOut]
    alerts: list[AlertOut]
    last_seq: int


class TwinOut(BaseModel):
    """The twin's current estimate with uncertainty."""

    patient_id: str
    last_seq: int
    day: int
    severity_mean: float
    severity_sd: float
    anxiety_mean: float
    p_episode: float
    model_version: str
