"""Reading the :class:`twin.ports.AuditLog` port whole: what chain verification reads.

:func:`twin.domain.audit.verify_chain` needs every entry in chain order; the port hands them
out in pages. This module sits beside :mod:`twin.ports`, not in :mod:`twin.domain`, because it
takes a port (the domain layer may not import the ports).
"""

from __future__ import annotations

from twin.domain.audit import AuditEntry
from twin.ports import AuditLog

__all__ = ["all_audit_entries"]


async def all_audit_entries(log: AuditLog, *, page: int = 10_000) -> list[AuditEntry]:
    """The whole audit chain, read page by page (for verification).

    Args:
        log: The audit trail.
        page: Entries per read.

    Returns:
        Every entry, in chain order.
    """
    out: list[AuditEntry] = []
    while batch := await log.entries(after_seq=out[-1].seq if out else 0, limit=page):
        out.extend(batch)
    return out
