"""``python -m deployments.migrate``: apply the schema migrations and exit.

Migrations also run at start-up (idempotently); this command lets operators apply them ahead of
a deployment. With no ``database_url`` in the settings, the embedded SQLite file in the data
directory is migrated.
"""

from __future__ import annotations

import asyncio
import sys

from deployments.bootstrap import migrate
from twin.settings import TwinSettings


def main() -> int:
    """Apply migrations; print where."""
    print(f"migrations applied: {asyncio.run(migrate(TwinSettings()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
