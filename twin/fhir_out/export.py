"""Bulk Data ``$export`` of a care team (FHIR Bulk Data Access IG v2): the job and its manifest.

A kick-off is checked here (:func:`kickoff_parameters`: ``_type`` and ``_outputFormat`` are
supported; ``_since`` and every other parameter are refused with the reason, never ignored), then
queued as an :class:`ExportRequest` with its status document, an :class:`ExportJob`, in the job
queue (:mod:`twin.service.jobs`). The job writes one part per patient and resource type: the
patient's resources of that type as NDJSON, sealed under the patient's data key (an erasure
deletes and shreds it with the rest of their data). A finished job's manifest
(:func:`manifest`) lists one file per resource type; a file is its parts, opened in patient
order, for as long as the export lasts (``expires_at``; then its parts are deleted).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from twin import errors
from twin.fhir_out.estimates import ESTIMATE_TYPES
from twin.fhir_out.record import RECORD_TYPES

__all__ = [
    "BULK_PARAMETERS",
    "EXPORT_TYPES",
    "OUTCOMES",
    "OUTPUT_FORMATS",
    "PARTS",
    "ExportJob",
    "ExportOutput",
    "ExportRequest",
    "kickoff_parameters",
    "manifest",
    "part_id",
    "part_prefix",
    "progress",
]

#: The resource types an export holds (``_type`` chooses among them), in manifest order.
EXPORT_TYPES: tuple[str, ...] = tuple(dict.fromkeys((*RECORD_TYPES, *ESTIMATE_TYPES)))
#: ``_outputFormat`` values meaning NDJSON (the IG's abbreviations included).
OUTPUT_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
#: Parameters of the Bulk Data IG: named in a refusal (any other is "an unknown parameter").
BULK_PARAMETERS = frozenset({
    "_outputFormat", "_since", "_until", "_type", "_elements", "_typeFilter", "patient",
    "includeAssociatedData", "organizeOutputBy", "allowPartialManifests",
})  # fmt: skip
#: The document collection of an export's parts (sealed NDJSON, one per patient and type).
PARTS = "fhir_export_part"
#: The name of the file of patients an export could not include (the manifest's ``error``).
OUTCOMES = "OperationOutcome"
_SINCE = (
    "_since: not supported (the event log keeps when each thing happened, not when it was "
    "recorded); export without it"
)
_TYPE = r"^[A-Z][A-Za-z]{1,63}$"
_TEAM = r"^[A-Za-z0-9._-]+$"


class ExportRequest(BaseModel):
    """A queued export: whose care team, which types, and who asked (no PHI).

    Attributes:
        care_team: The care team (the Group) whose patients are exported.
        types: Resource types to export (``None``: all of :data:`EXPORT_TYPES`).
        request_url: The kick-off request's URL as the client sent it (the manifest's
            ``request``).
        submitted_role: The role of the caller who asked (the export's audit entries).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    care_team: str = Field(min_length=1, max_length=64, pattern=_TEAM)
    types: list[str] | None = Field(default=None, min_length=1, max_length=len(EXPORT_TYPES))
    request_url: str = Field(min_length=1, max_length=4096)
    submitted_role: str = Field(min_length=1, max_length=32)

    def wanted(self) -> tuple[str, ...]:
        """The types to export, in :data:`EXPORT_TYPES` order."""
        return tuple(t for t in EXPORT_TYPES if self.types is None or t in self.types)


class ExportOutput(BaseModel):
    """One file of a finished export: its resource type and how many resources it held."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(pattern=_TYPE, max_length=64)
    count: int = Field(ge=0)


class ExportJob(BaseModel):
    """An export's status document (the job queue's; the Bulk Data status answer is built from it).

    Attributes:
        job_id: The job's id (sorts by submission time).
        status: ``queued``, ``running``, ``succeeded``, ``failed`` or ``cancelled``.
        submitted_by: The token subject who asked; only they may poll it and read its files.
        attempts: Times the job runner started it.
        care_team: The exported care team.
        submitted_at: UTC, ISO 8601.
        started_at: UTC, ISO 8601.
        finished_at: UTC, ISO 8601.
        transaction_time: When the export read the data (the manifest's ``transactionTime``).
        expires_at: When its files are deleted (UTC, ISO 8601).
        patients_total: Patients of the care team when it started.
        patients_done: Patients exported or refused so far.
        outputs: Its files, by resource type (types without a resource are left out).
        errors: Patients it could not include (lines of the OperationOutcome file).
        error: Why it failed (class and message; no values).
        deleted_at: When its files were deleted (expired, or on the client's request).
    """

    model_config = ConfigDict(extra="forbid")

    job_id: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    submitted_by: str | None = None
    attempts: int = 0
    care_team: str
    submitted_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    transaction_time: str | None = None
    expires_at: str | None = None
    patients_total: int | None = None
    patients_done: int = 0
    outputs: list[ExportOutput] = Field(default_factory=list)
    errors: int = 0
    error: str | None = None
    deleted_at: str | None = None


def _refusal(name: str) -> str:
    shown = name if name in BULK_PARAMETERS else "an unknown parameter"
    return f"{shown}: not supported by this server (supported: _type, _outputFormat)"


#: Query parameters a kick-off may carry (each type at most twice over): more is no request
#: this server can honour, and would not fit the stored request URL.
MAX_KICKOFF_PARAMETERS = 16


def kickoff_parameters(params: Sequence[tuple[str, str]]) -> list[str] | None:
    """The ``_type`` of a kick-off's query, refusing what this server does not do.

    Args:
        params: The query's ``(name, value)`` pairs, repeated names included.

    Returns:
        The resource types asked for (``None``: every type).

    Raises:
        InvalidInputError: ``_since`` (not supported), a parameter other than ``_type`` and
            ``_outputFormat``, a type this server does not export, or a format other than
            NDJSON.
    """
    if len(params) > MAX_KICKOFF_PARAMETERS:
        raise errors.InvalidInputError(
            f"at most {MAX_KICKOFF_PARAMETERS} query parameters in a kick-off"
        )
    types: list[str] = []
    asked_types = False
    for name, value in params:
        if name == "_since":
            raise errors.InvalidInputError(_SINCE)
        if name == "_outputFormat":
            if value not in OUTPUT_FORMATS:
                raise errors.InvalidInputError(
                    f"_outputFormat: {', '.join(OUTPUT_FORMATS)} (NDJSON) only"
                )
        elif name == "_type":
            asked_types = True
            for kind in (v.strip() for v in value.split(",")):
                if kind not in EXPORT_TYPES:
                    raise errors.InvalidInputError(
                        f"_type: each of {', '.join(EXPORT_TYPES)} (comma-separated)"
                    )
                types.append(kind)
        else:
            raise errors.InvalidInputError(_refusal(name))
    return list(dict.fromkeys(types)) if asked_types else None


def part_prefix(job_id: str, resource_type: str) -> str:
    """The prefix of the parts of one file of an export (document ids sort by it)."""
    return f"{job_id}.{resource_type}."


def part_id(job_id: str, resource_type: str, index: int) -> str:
    """The id of the part of patient ``index`` (their place in the export) in one file."""
    return f"{part_prefix(job_id, resource_type)}{index:07d}"


def progress(job: ExportJob) -> str:
    """An export's progress as ``X-Progress`` states it (counts only)."""
    if job.patients_total is None:
        return job.status
    return f"{job.status}: {job.patients_done} of {job.patients_total} patients"


def manifest(job: ExportJob, *, request_url: str, file_url: Callable[[str], str]) -> dict[str, Any]:
    """The Bulk Data completion manifest of a finished export.

    Args:
        job: The export (succeeded).
        request_url: The kick-off request's URL.
        file_url: The URL of a file, from its name (``Observation``, ...).
    """
    error: list[Mapping[str, Any]] = []
    if job.errors:
        error.append({"type": OUTCOMES, "url": file_url(OUTCOMES), "count": job.errors})
    return {
        "transactionTime": job.transaction_time,
        "request": request_url,
        "requiresAccessToken": True,
        "output": [
            {"type": out.type, "url": file_url(out.type), "count": out.count} for out in job.outputs
        ],
        "error": error,
    }
