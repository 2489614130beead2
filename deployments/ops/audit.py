"""Verifying and anchoring the audit chain (``novamind audit verify`` / ``novamind audit anchor``).

Reads the chain page by page from the configured store (PostgreSQL when
``NOVAMIND_DATABASE_URL`` is set, else the embedded SQLite file) and the anchors of the anchor
store (``NOVAMIND_AUDIT_ANCHORS``: S3 Object Lock, or the local append-only file), recomputes
every link and holds the chain to every anchor. ``python -m deployments.ops.audit`` runs the
verification: exit code 0 when intact, 1 when an entry was edited, deleted, inserted or moved,
the chain contradicts an anchor (rewritten and re-hashed, truncated, or a forged anchor), an
anchor is unreadable, or (outside local use) anchoring stopped. The database is opened
read-only and never migrated (both commands only read the chain).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from deployments.stores import anchoring_policy, audit_anchor_store, open_audit_reader
from twin.audit_log import AnchorOutcome, anchor_audit_log, verify_audit_log
from twin.domain.audit import ChainReport
from twin.settings import TwinSettings

__all__ = ["anchor", "broken", "details", "intact", "main", "verify"]


async def _verify(
    settings: TwinSettings, expected_head: str | None, anchors: bool, covered_only: bool
) -> ChainReport:
    async with open_audit_reader(settings) as log:
        if not anchors:
            return await verify_audit_log(log, None, expected_head=expected_head)
        return await verify_audit_log(
            log,
            audit_anchor_store(settings),
            expected_head=expected_head,
            policy=anchoring_policy(settings),
            covered_only=covered_only,
        )


def verify(
    settings: TwinSettings,
    expected_head: str | None = None,
    *,
    anchors: bool = True,
    covered_only: bool = False,
) -> ChainReport:
    """Verify the audit chain of the stores ``settings`` name (against its anchors).

    ``covered_only``: a restored chain, held to the anchors it covers; those above its
    length are counted, not failed.
    """
    return asyncio.run(_verify(settings, expected_head, anchors, covered_only))


async def _anchor(settings: TwinSettings) -> AnchorOutcome:
    async with open_audit_reader(settings) as log:
        return await anchor_audit_log(
            log,
            audit_anchor_store(settings),
            every=settings.audit_anchor_every_entries,
            # Scheduled every interval: an unchanged head is anchored again past half of it,
            # so the latest anchor is never older than the interval while anchoring works.
            refresh_after_s=settings.audit_anchor_interval_s / 2,
        )


def anchor(settings: TwinSettings) -> AnchorOutcome:
    """Anchor the chain's head if it checks from its latest anchor on (:func:`anchor_audit_log`)."""
    return asyncio.run(_anchor(settings))


def broken(report: ChainReport) -> str:
    """Why a chain does not verify, in one line."""
    where = f" at seq {report.first_bad_seq}" if report.first_bad_seq is not None else ""
    return f"audit chain BROKEN{where}: {report.reason}"


def intact(report: ChainReport) -> str:
    """What an intact chain's verification found, in one line."""
    line = f"audit chain intact: {report.entries} entries, head {report.head_hash}"
    latest = report.latest_anchor
    if latest is not None:
        line += (
            f"; {report.anchors_checked} anchors agree (latest: {latest.entries} entries "
            f"at {latest.at})"
        )
    if report.anchors_beyond:
        line += f"; {report.anchors_beyond} anchors lie beyond the chain (not held to it)"
    return line


def details(report: ChainReport, *, anchors: bool = True) -> list[str]:
    """The report's lists, one line each: contradicted and unreadable anchors, warnings.

    ``anchors``: whether the anchor store was read (an empty one is then worth a warning).
    """
    lines = [
        f"  contradicted: {a.describe()} (head {a.head_hash})" for a in report.contradicted_anchors
    ]
    if report.contradicted_count > len(report.contradicted_anchors):
        lines.append(f"  ... {report.contradicted_count} contradicted in all")
    lines += [f"  unreadable: {name}" for name in report.unreadable_anchors]
    if report.unreadable_count > len(report.unreadable_anchors):
        lines.append(f"  ... {report.unreadable_count} unreadable in all")
    lines += [f"warning: {text}" for text in report.warnings]
    if anchors and report.latest_anchor is None and not report.unreadable_count:
        lines.append("warning: no audit anchor was found: the chain was checked on its own")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="novamind-audit", description=__doc__)
    parser.add_argument("--expected-head", help="head hash anchored by an earlier run")
    parser.add_argument("--no-anchors", action="store_true", help="skip the anchor store")
    parser.add_argument(
        "--covered-only", action="store_true", help="a restored chain: only anchors it covers"
    )
    args = parser.parse_args(argv)
    report = verify(
        TwinSettings(), args.expected_head, anchors=not args.no_anchors,
        covered_only=args.covered_only,
    )  # fmt: skip
    if report.ok:
        print(intact(report))
    else:
        print(broken(report), file=sys.stderr)
    for line in details(report, anchors=not args.no_anchors):
        print(line, file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
