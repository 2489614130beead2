"""Verifying and anchoring the audit chain (``novamind audit verify`` / ``novamind audit anchor``).

Reads the whole chain from the configured store (PostgreSQL when ``NOVAMIND_DATABASE_URL`` is
set, else the embedded SQLite file) and every anchor of the anchor store
(``NOVAMIND_AUDIT_ANCHORS``: S3 Object Lock, or the local append-only file), recomputes every
link and holds the chain to every anchor. ``python -m deployments.ops.audit`` runs the
verification: exit code 0 when intact, 1 when an entry was edited, deleted, inserted or moved,
or the chain contradicts an anchor (rewritten and re-hashed, or truncated).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from deployments.stores import audit_anchor_store, open_audit_log
from twin.audit_log import AnchorOutcome, anchor_audit_log, verify_audit_log
from twin.domain.audit import ChainReport
from twin.settings import TwinSettings

__all__ = ["anchor", "broken", "intact", "main", "verify"]


async def _verify(settings: TwinSettings, expected_head: str | None, anchors: bool) -> ChainReport:
    async with open_audit_log(settings) as log:
        store = audit_anchor_store(settings) if anchors else None
        return await verify_audit_log(log, store, expected_head=expected_head)


def verify(
    settings: TwinSettings, expected_head: str | None = None, *, anchors: bool = True
) -> ChainReport:
    """Verify the audit chain of the stores ``settings`` name (against its anchors)."""
    return asyncio.run(_verify(settings, expected_head, anchors))


async def _anchor(settings: TwinSettings) -> AnchorOutcome:
    async with open_audit_log(settings) as log:
        return await anchor_audit_log(log, audit_anchor_store(settings))


def anchor(settings: TwinSettings) -> AnchorOutcome:
    """Anchor the chain's head if it verifies (:func:`twin.audit_log.anchor_audit_log`)."""
    return asyncio.run(_anchor(settings))


def broken(report: ChainReport) -> str:
    """Why a chain does not verify, in one line."""
    where = f" at seq {report.first_bad_seq}" if report.first_bad_seq is not None else ""
    return f"audit chain BROKEN{where}: {report.reason}"


def intact(report: ChainReport) -> str:
    """What an intact chain's verification found, in one line."""
    line = f"audit chain intact: {report.entries} entries, head {report.head_hash}"
    if report.latest_anchor is not None:
        latest = report.latest_anchor
        line += (
            f"; {report.anchors_checked} anchors agree (latest: {latest.entries} entries "
            f"at {latest.at})"
        )
    return line


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="novamind-audit", description=__doc__)
    parser.add_argument("--expected-head", help="head hash anchored by an earlier run")
    parser.add_argument("--no-anchors", action="store_true", help="skip the anchor store")
    args = parser.parse_args(argv)
    report = verify(TwinSettings(), args.expected_head, anchors=not args.no_anchors)
    if report.ok:
        print(intact(report))
        return 0
    print(broken(report), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
