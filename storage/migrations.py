"""Applying a backend's versioned SQL migrations with yoyo (shared by the SQL backends).

Why yoyo-migrations: plain SQL files, a recorded history table and a lock, for SQLite and
PostgreSQL alike, without an ORM.
"""

from __future__ import annotations

from importlib import resources

from yoyo import get_backend, read_migrations

__all__ = ["apply_migrations"]


def apply_migrations(url: str, package: str) -> None:
    """Apply the pending migrations in ``<package>/migrations`` to the database at ``url``.

    Args:
        url: A yoyo database URL (``sqlite:///path``, ``postgresql+psycopg://...``).
        package: The backend package holding the ``migrations`` folder.
    """
    backend = get_backend(url)
    try:
        with resources.as_file(resources.files(package) / "migrations") as folder:
            migrations = read_migrations(str(folder))
            # Nothing pending (every start but the first after a release): no lock. A process
            # killed while it held the lock would otherwise leave its row behind, and every
            # process that opens the store after it would wait for a lock nobody releases.
            try:
                pending = len(backend.to_apply(migrations))
            except Exception:  # the history table itself is not there yet: take the lock
                pending = -1
            if pending == 0:
                return
            with backend.lock():
                backend.apply_migrations(backend.to_apply(migrations))
    finally:
        backend.connection.close()
