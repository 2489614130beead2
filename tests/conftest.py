"""Shared test configuration (suite-specific fixtures live in each folder's conftest)."""
