"""ChangeFeed contract (in-process and Redis), and Redis outages degrading, never failing."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from storage.memory import InProcessChangeFeed
from storage.redis import RedisChangeFeed
from storage.redis.feed import CHANNEL, RETRY_S, patient_digest
from tests.servers import RedisServer
from twin import errors


@pytest.fixture(scope="module")
def redis_server():
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["memory", "redis"])
async def feed(request, redis_server):
    if request.param == "memory":
        yield InProcessChangeFeed()
        return
    client = aioredis.from_url(redis_server.url, socket_timeout=1.0, socket_connect_timeout=1.0)
    yield RedisChangeFeed(client)
    await client.aclose()


async def test_cache_round_trip(feed):
    assert await feed.cached_summary("p1") is None
    await feed.cache_summary("p1", b"\x00sealed\xff", ttl_s=60)
    assert await feed.cached_summary("p1") == b"\x00sealed\xff"


async def test_memory_feed_delivers_notifications():
    feed = InProcessChangeFeed()
    queue = feed.subscribe()
    await feed.publish("p1", 7)
    assert await asyncio.wait_for(queue.get(), 1.0) == ("p1", 7)


async def test_redis_feed_publishes_pseudonymous_notifications(redis_server):
    client = aioredis.from_url(redis_server.url, socket_timeout=1.0)
    pubsub = client.pubsub()
    await pubsub.subscribe(CHANNEL)
    await pubsub.get_message(timeout=1.0)  # the subscribe confirmation
    await RedisChangeFeed(client).publish("MRN-00042", 9)
    message = None
    for _ in range(20):
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message is not None:
            break
    assert message is not None
    assert message["data"] == f"{patient_digest('MRN-00042')}:9".encode()
    assert b"MRN" not in message["data"]
    await pubsub.aclose()
    await client.aclose()


async def test_redis_outage_is_a_fast_retryable_error():
    server = RedisServer()
    server.start()
    client = aioredis.from_url(server.url, socket_timeout=1.0, socket_connect_timeout=1.0)
    feed = RedisChangeFeed(client)
    await feed.publish("p", 1)
    server.stop()
    started = time.monotonic()
    with pytest.raises(errors.StorageUnavailableError, match="Redis"):
        await feed.publish("p", 2)
    assert time.monotonic() - started < 5.0
    await client.aclose()


async def test_a_hung_redis_costs_one_timeout_then_fails_fast_until_retried():
    server = RedisServer()
    server.start()
    now = [0.0]
    client = aioredis.from_url(server.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    feed = RedisChangeFeed(client, clock=lambda: now[0])
    try:
        await feed.publish("p", 1)
        server.pause()  # hung: every call would wait out the socket timeout
        with pytest.raises(errors.StorageUnavailableError):
            await feed.cache_summary("p", b"sealed", ttl_s=60)
        started = time.monotonic()
        for _ in range(20):
            with pytest.raises(errors.StorageUnavailableError, match="moments ago"):
                await feed.publish("p", 2)
        assert time.monotonic() - started < 0.5  # no call waited on the hung server
        server.resume()
        now[0] += RETRY_S
        await feed.publish("p", 3)  # tried again, and Redis answers
        await feed.cache_summary("p", b"sealed", ttl_s=60)
        assert await feed.cached_summary("p") == b"sealed"
    finally:
        await client.aclose()
        server.stop()
