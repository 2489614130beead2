"""Redis change feed and summary cache (redis.asyncio)."""

from storage.redis.feed import RedisChangeFeed

__all__ = ["RedisChangeFeed"]
