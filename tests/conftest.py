"""Shared test configuration (suite-specific fixtures live in each folder's conftest)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import PostgresServer


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session; tests create their own databases on it."""
    server = PostgresServer()
    server.start()
    yield server
    server.destroy()
