"""In-process adapters for the embedded default (the same classes ``twin.testing`` ships)."""

from twin.testing.fakes import MemoryChangeFeed as InProcessChangeFeed

__all__ = ["InProcessChangeFeed"]
