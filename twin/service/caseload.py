"""A clinician's caseload: the patients of their care teams with each twin's summary.

One request gives what a list view shows: identifiers and the twin's latest estimate, filtered,
sorted and paged. The order is total: the sort key (a twin without a summary yet sorts last in
either direction), then the patient id. A page continues after the last row of the one before
(a keyset cursor, opaque to clients), so a twin that changes between pages moves in the order
but no row is repeated or skipped for the others.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

from twin import errors, ports
from twin.schemas import CaseloadSort

__all__ = [
    "CaseloadQuery",
    "Cursor",
    "decode_cursor",
    "encode_cursor",
    "page",
]

#: The longest cursor a client may send back (characters).
MAX_CURSOR = 256

#: A row's place in the order: (sort, key or None, patient id).
Cursor = tuple[str, float | None, str]


@dataclass(frozen=True, slots=True)
class CaseloadQuery:
    """Filters, order and page of a caseload (each filter ``None``: no condition).

    Attributes:
        care_team: One of the caller's teams (default: all of a clinician's teams).
        min_severity: Posterior mean latent severity at least this (PHQ-9 points, 0..27).
        min_p_severe: P(severity >= 15) at least this (0..1).
        alert: An alert flag the twin carries.
        updated_since: Twin updated at or after this time (Unix seconds).
        sort: The order (see :data:`CaseloadSort`).
        after: The cursor of the previous page's last row.
        limit: Rows per page.
    """

    care_team: str | None = None
    min_severity: float | None = None
    min_p_severe: float | None = None
    alert: str | None = None
    updated_since: float | None = None
    sort: CaseloadSort = "-severity"
    after: str | None = None
    limit: int = 50

    @property
    def filters_twins(self) -> bool:
        """Whether a filter needs a twin summary (patients without one are then left out)."""
        return any(
            v is not None
            for v in (self.min_severity, self.min_p_severe, self.alert, self.updated_since)
        )


def _key(sort: str, entry: ports.IndexEntry | None) -> float | None:
    if entry is None or sort == "patient_id":
        return None
    field = sort.lstrip("-")
    value = {
        "severity": entry.severity_mean,
        "p_severe": entry.p_severe,
        "updated_at": entry.updated_at,
    }[field]
    return float(value)


def _rank(sort: str, key: float | None, patient_id: str) -> tuple[int, float, str]:
    # Summaries first in either direction; descending sorts negate the key.
    if key is None:
        return (1, 0.0, patient_id)
    return (0, -key if sort.startswith("-") else key, patient_id)


def encode_cursor(cursor: Cursor) -> str:
    """The opaque form of a row's place in the order (URL-safe base64 of JSON)."""
    raw = json.dumps(list(cursor), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str, sort: str) -> Cursor:
    """A cursor a client sent back, checked against the order it asks for.

    Raises:
        twin.errors.InvalidInputError: Not a cursor this service made, or one made for
            another sort order.
    """
    try:
        if len(text) > MAX_CURSOR:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        was, key, patient_id = json.loads(raw)
        if not isinstance(was, str) or not isinstance(patient_id, str):
            raise ValueError("malformed")
        if key is not None and (
            isinstance(key, bool) or not isinstance(key, int | float) or not math.isfinite(key)
        ):
            raise ValueError("malformed")
    except (ValueError, TypeError, binascii.Error) as exc:
        raise errors.InvalidInputError("after: not a cursor of this listing") from exc
    if was != sort:
        raise errors.InvalidInputError("after: a cursor of another sort order")
    return (was, None if key is None else float(key), patient_id)


def page(
    patient_ids: Sequence[str],
    summaries: dict[str, ports.IndexEntry],
    query: CaseloadQuery,
) -> tuple[list[str], str | None]:
    """One page of patients in the query's order, and the cursor of the next (or ``None``).

    Args:
        patient_ids: The caller's scope (the care teams' patients).
        summaries: The twin summaries of those that have one and pass the filters.
        query: The order, cursor and page size (the filters were applied to ``summaries``).
    """
    rows = [
        (pid, _key(query.sort, summaries.get(pid)))
        for pid in dict.fromkeys(patient_ids)
        if pid in summaries or not query.filters_twins
    ]
    rows.sort(key=lambda row: _rank(query.sort, row[1], row[0]))
    if query.after is not None:
        _, key, last = decode_cursor(query.after, query.sort)
        start = _rank(query.sort, key, last)
        rows = [row for row in rows if _rank(query.sort, row[1], row[0]) > start]
    chosen = rows[: query.limit]
    more = len(rows) > query.limit
    cursor = encode_cursor((query.sort, chosen[-1][1], chosen[-1][0])) if more else None
    return [pid for pid, _ in chosen], cursor
