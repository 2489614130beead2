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
            with backend.lock():
                backend.apply_migrations(backend.to_apply(migrations))
    finally:
        backend.connection.close()
