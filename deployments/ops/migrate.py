"""``python -m deployments.ops.migrate``: apply the schema migrations and exit.

Migrations also run at start-up (idempotently); this command lets operators apply them ahead of
a deployment. With no ``database_url`` in the settings, the embedded SQLite file in the data
directory is migrated.
"""

from __future__ import annotations

import asyncio
import sys

from deployments.stores import migrate
from twin.settings import TwinSettings


def main(settings: TwinSettings | None = None) -> int:
    """Apply migrations to the stores ``settings`` name (default: read them now); print where."""
    print(f"migrations applied: {asyncio.run(migrate(settings or TwinSettings()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
