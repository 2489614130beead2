"""A twin host's ports, opened in the host's own process: the host's part of the composition.

Apart from :mod:`deployments.bootstrap` because a host imports this module when it starts, and
again each time Ray restarts it after a death: what it imports lengthens the time the host's
twins are unavailable. It loads the stores and the change feed, never the API (FastAPI, the
routes, token verification), which cost a restarted host about 0.25 s of its start.

- ChangeFeed: ``redis_url`` → Redis (imported only then); else in-process.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

from deployments.stores import checkpoint_store, open_stores
from deployments.telemetry import configure_tracing, traced
from storage.memory import InProcessChangeFeed
from twin import ports
from twin.service.host import HostPorts
from twin.service.priors import DocumentPriorRegistry
from twin.settings import TwinSettings

__all__ = ["build_host_ports"]


async def build_host_ports(settings: TwinSettings) -> HostPorts:
    """Open the stores of one host process (importable, so Ray actors can receive it).

    A twin host actor calls this first, in its own process: tracing starts there (when
    configured) before its stores are opened, so they are traced too.
    """
    configure_tracing(settings, process="twinhost")
    stack = AsyncExitStack()
    stores = await open_stores(settings, stack)
    checkpoints = checkpoint_store(settings)
    feed: ports.ChangeFeed
    if settings.redis_url:
        import redis.asyncio as aioredis  # only when Redis is configured

        from storage.redis import RedisChangeFeed

        client = aioredis.from_url(
            settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0
        )
        stack.push_async_callback(client.aclose)
        feed = RedisChangeFeed(client)
    else:
        feed = InProcessChangeFeed()
    feed = traced(feed, ports.ChangeFeed, "change_feed")
    return HostPorts(
        stores.events,
        checkpoints,
        stores.sealer,
        stores.index,
        feed,
        DocumentPriorRegistry(stores.documents),
        stack.aclose,
    )
