"""Builders and in-memory fakes for tests, benchmarks, demos and SDK users."""
