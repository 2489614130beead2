"""``python -m deployments.ops.audit [--expected-head HASH]``: verify the audit chain.

Reads the whole chain from the configured store (PostgreSQL when ``NOVAMIND_DATABASE_URL`` is
set, else the embedded SQLite file), recomputes every link and prints the head hash to anchor
elsewhere. Exit code 0 when intact, 1 when an entry was edited, deleted, inserted or moved.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from deployments.stores import open_audit_log
from twin.audit_log import all_audit_entries
from twin.domain.audit import AuditEntry, ChainReport, verify_chain
from twin.settings import TwinSettings


async def _entries(settings: TwinSettings) -> list[AuditEntry]:
    async with open_audit_log(settings) as log:
        return await all_audit_entries(log)


def verify(settings: TwinSettings, expected_head: str | None = None) -> ChainReport:
    """Verify the audit chain of the stores ``settings`` name."""
    return verify_chain(asyncio.run(_entries(settings)), expected_head=expected_head)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="novamind-audit", description=__doc__)
    parser.add_argument("--expected-head", help="head hash anchored by an earlier run")
    args = parser.parse_args(argv)
    report = verify(TwinSettings(), args.expected_head)
    if report.ok:
        print(f"audit chain intact: {report.entries} entries, head {report.head_hash}")
        return 0
    print(f"audit chain BROKEN at seq {report.first_bad_seq}: {report.reason}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
