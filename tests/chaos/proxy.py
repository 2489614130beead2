"""A TCP proxy that injects network faults between the service and one of its servers.

Every connection the service opens to PostgreSQL or Redis goes through one of these, so the
network between them can misbehave the way real networks do:

- **latency**: every chunk of bytes, in either direction, waits before it is forwarded;
- **reset**: every open connection is closed with a TCP RST (``SO_LINGER`` 0), the way a
  load balancer or a firewall drops established flows;
- **black hole**: bytes stop flowing both ways and new connections are accepted but get no
  answer, the way a partition looks from either side; when it heals, what was held flows on
  (TCP would have retransmitted it).

No maintained fault proxy installs here without a container engine (Toxiproxy is a Go server
shipped as a binary or an image), so this small asyncio one runs in a thread of the test
process instead: it needs nothing but the standard library.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from dataclasses import dataclass, field

#: How much a pump reads at a time, bytes.
_CHUNK = 65536


@dataclass(eq=False)  # identity: a link is kept in a set
class _Link:
    """One proxied connection: the service's side and the server's side."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class FaultProxy:
    """Forwards ``127.0.0.1:port`` to ``127.0.0.1:target_port``, with faults on demand.

    The proxy runs its own event loop in a daemon thread; the fault methods are called from
    any thread.

    Args:
        target_port: The server's port.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.latency_s = 0.0
        self._flowing: asyncio.Event | None = None
        self._links: set[_Link] = set()
        # The event loop keeps only weak references to tasks: a pump must not be collected
        # while it waits for bytes.
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> FaultProxy:
        """Listen on a free port (``self.port``) and start forwarding."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    async def _listen(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def _call(self, fn: object) -> None:
        async def run() -> None:
            fn()  # type: ignore[operator]

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def set_latency(self, seconds: float) -> None:
        """Delay every chunk forwarded from now on by ``seconds`` (0 for none)."""
        self.latency_s = seconds

    def black_hole(self, on: bool) -> None:
        """Stop (``True``) or resume (``False``) all traffic; connections stay open."""
        assert self._flowing is not None, "the proxy is not started"
        self._call(self._flowing.clear if on else self._flowing.set)

    def reset(self) -> int:
        """Reset every open connection (RST to the service, close to the server); how many."""
        links = list(self._links)
        self._call(lambda: [self._abort(link) for link in links])
        return len(links)

    def stop(self) -> None:
        """Close every connection and the listener, and end the proxy's thread."""
        if not self._thread.is_alive():
            return

        async def close() -> None:
            for link in list(self._links):
                self._abort(link)
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _abort(self, link: _Link) -> None:
        self._links.discard(link)
        for task in link.tasks:
            task.cancel()
        sock = link.client.get_extra_info("socket")
        if sock is not None:  # linger 0: close() sends RST instead of FIN
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        link.client.transport.abort()
        link.server.transport.abort()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        await self._flowing.wait()  # in a black hole a new connection hangs, unanswered
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:  # the server is down: the service sees its connection refused
            writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        link.tasks = [
            asyncio.create_task(self._pump(reader, up_writer, link)),
            asyncio.create_task(self._pump(up_reader, writer, link)),
        ]
        for task in link.tasks:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, link: _Link
    ) -> None:
        assert self._flowing is not None
        try:
            while chunk := await source.read(_CHUNK):
                await self._flowing.wait()
                if self.latency_s > 0:
                    await asyncio.sleep(self.latency_s)
                await self._flowing.wait()
                sink.write(chunk)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        # One side closed (or failed): close both, as a direct connection would be.
        if link in self._links:
            self._links.discard(link)
            link.client.transport.close()
            link.server.transport.close()
