"""Bulk-ingest job status, kept as documents (collection ``ingest_job``) for the API and SDK.

The job writes its status when it starts (``running``), and when it ends (``succeeded`` with its
report, or ``failed`` with the error's class and message). A job id sorts by start time
(``YYYYmmddTHHMMSSZ-<8 hex>``), so the API lists jobs oldest first with keyset pages.
The body is the :class:`twin.schemas.IngestJobOut` JSON: counts and reasons, never a value.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from twin import ports, schemas

__all__ = ["COLLECTION", "load", "new_job_id", "save"]

COLLECTION = "ingest_job"


def new_job_id(now: datetime | None = None) -> str:
    """A job id that sorts by start time."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


async def save(documents: ports.DocumentStore, job: schemas.IngestJobOut) -> None:
    """Write (or replace) the job's status document."""
    body = job.model_dump_json().encode()
    await documents.put(ports.Document(COLLECTION, job.job_id, None, body, time.time()))


def load(document: ports.Document) -> schemas.IngestJobOut:
    """The job of a status document."""
    return schemas.IngestJobOut.model_validate_json(document.body)
