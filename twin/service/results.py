"""What twin operations return, shared by the host and everything that forwards to it."""

from __future__ import annotations

from dataclasses import dataclass, field

from twin import ports
from twin.assimilation.alerts import Alert

__all__ = ["IngestResult"]


@dataclass(frozen=True, slots=True)
class IngestResult:
    """The acknowledgement of an ingest, and what applying it raised."""

    appended: tuple[ports.AppendResult, ...]
    alerts: tuple[Alert, ...]
    last_seq: int
    #: Sequence number -> why the twin could not apply that event (it is stored all the same).
    rejected: dict[int, str] = field(default_factory=dict)
