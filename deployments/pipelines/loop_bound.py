"""Async stores held open for synchronous code: a Ray Data actor, a job's progress updates.

Ray Data calls an actor's ``__call__`` synchronously, many times, in one process; the stores
are async and must stay open between calls (opening them connects and checks the schema). So
they are opened once on a private event loop, each call runs its coroutine on that loop, and
the stores close with the holder (or when the actor's process lets it go).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Coroutine
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any, Generic, TypeVar

__all__ = ["LoopBound"]

T = TypeVar("T")
R = TypeVar("R")


class LoopBound(Generic[T]):
    """What an async context manager opened, on a private loop, until :meth:`close`.

    Args:
        opener: The context manager that opens the stores (e.g. ``open_documents(settings)``).

    Attributes:
        value: What ``opener`` yielded.
    """

    def __init__(self, opener: AbstractAsyncContextManager[T]) -> None:
        self._loop = asyncio.new_event_loop()
        self._stack = AsyncExitStack()
        try:
            self.value: T = self._loop.run_until_complete(self._stack.enter_async_context(opener))
        except BaseException:
            self._loop.close()
            raise

    def run(self, work: Coroutine[Any, Any, R]) -> R:
        """Run ``work`` on the stores' loop and return its result (blocks the caller)."""
        return self._loop.run_until_complete(work)

    def close(self) -> None:
        """Close the stores and the loop (again: nothing)."""
        if not self._loop.is_closed():
            try:
                self._loop.run_until_complete(self._stack.aclose())
            finally:
                self._loop.close()

    def __enter__(self) -> LoopBound[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A Ray Data actor is never told it is done: its stores close when it is collected.
        # Not while the interpreter shuts down (the process's end closes the connections) or
        # from a thread whose own loop is running (run_until_complete would refuse).
        if not hasattr(self, "_loop") or sys.is_finalizing():
            return
        with contextlib.suppress(RuntimeError):
            self.close()
