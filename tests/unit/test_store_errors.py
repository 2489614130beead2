"""Which store failures are retryable (503 with Retry-After) and which stay incidents."""

from __future__ import annotations

import asyncio
import errno
import sqlite3

import asyncpg
import pytest
from limits.aio.storage import MemoryStorage

from deployments.api.limiter import SHARED_RETRY_S, RateLimiter
from storage.disk import os_error
from storage.postgres.database import unavailable
from storage.sqlite.database import storage_error
from twin import errors


@pytest.mark.parametrize(
    ("code", "expected"),
    [(errno.ENOSPC, errors.StorageFullError), (errno.EDQUOT, errors.StorageFullError),
     (errno.EIO, errors.StorageUnavailableError), (errno.EROFS, errors.StorageUnavailableError),
     (errno.EMFILE, errors.StorageUnavailableError),
     (errno.EEXIST, OSError), (errno.EACCES, OSError), (errno.ENAMETOOLONG, OSError)],
)  # fmt: skip
def test_only_failures_that_pass_become_retryable(code, expected):
    failure = OSError(code, "x", "/data/checkpoints/pt_canary/1.ckpt")
    mapped = os_error(failure, "checkpoint store")
    assert type(mapped) is expected or (expected is OSError and type(mapped) is type(failure))
    assert "pt_canary" not in str(mapped)  # never a path (named after the patient)
    if not isinstance(mapped, errors.TwinError):
        assert mapped.errno == code


def _sqlite(code: int) -> sqlite3.Error:
    exc = sqlite3.OperationalError("x")
    exc.sqlite_errorcode = code  # type: ignore[attr-defined]
    return exc


@pytest.mark.parametrize(
    ("code", "expected"),
    [(13, errors.StorageFullError), (5, errors.StorageUnavailableError),
     (8, errors.StorageUnavailableError), (10 | (4 << 8), errors.StorageUnavailableError),
     (11, None), (19, None), (26, None), (1, None)],
    ids=["full", "busy", "readonly", "ioerr-read", "corrupt", "constraint", "notadb", "error"],
)  # fmt: skip
def test_a_damaged_file_or_a_constraint_is_not_retryable(code, expected):
    mapped = storage_error(_sqlite(code))
    assert (None if mapped is None else type(mapped)) is expected


@pytest.mark.parametrize(
    ("exc", "retryable"),
    [(ConnectionRefusedError(), True), (TimeoutError(), True),
     (asyncpg.exceptions.TooManyConnectionsError("x"), True),
     (asyncpg.exceptions.DiskFullError("x"), True),
     (asyncpg.exceptions.SerializationError("x"), True),
     (asyncpg.exceptions.DeadlockDetectedError("x"), True),
     (asyncpg.exceptions.ReadOnlySQLTransactionError("x"), True),
     (asyncpg.exceptions.AdminShutdownError("x"), True),
     (asyncpg.exceptions.ConnectionDoesNotExistError("x"), True),
     (asyncpg.exceptions.UniqueViolationError("x"), False),
     (asyncpg.exceptions.UndefinedColumnError("x"), False),
     (asyncpg.exceptions._base.DataError("x"), False),
     (asyncpg.exceptions.OutdatedSchemaCacheError("x"), True),
     (asyncpg.InternalClientError("another operation is in progress"), True)],
)  # fmt: skip
def test_postgres_failures_that_pass_are_retryable_and_bugs_are_not(exc, retryable):
    assert unavailable(exc) is retryable


class _HungStorage(MemoryStorage):
    """A shared storage that hangs (every call waits until released), or works."""

    def __init__(self) -> None:
        super().__init__()
        self.hung = asyncio.Event()
        self.release = asyncio.Event()
        self.calls = 0

    async def acquire_entry(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.hung.is_set():
            await self.release.wait()
            raise ConnectionError("timed out")
        return await super().acquire_entry(*args, **kwargs)


async def test_after_a_failure_one_request_probes_the_shared_storage_and_the_rest_go_local(
    monkeypatch,
):
    now = [1000.0]
    monkeypatch.setattr("deployments.api.limiter.time.monotonic", lambda: now[0])
    shared = _HungStorage()
    limiter = RateLimiter(100, shared)
    await limiter.check("a")
    shared.hung.set()
    shared.release.set()  # the first failure: it times out at once here
    await limiter.check("a")
    assert (shared.calls, limiter.fallbacks) == (2, 1)
    for _ in range(5):  # within the back-off: the hung storage is not called
        await limiter.check("a")
    assert (shared.calls, limiter.fallbacks) == (2, 6)
    now[0] += SHARED_RETRY_S
    shared.release.clear()
    probe = asyncio.create_task(limiter.check("a"))  # waits on the hung storage
    await asyncio.sleep(0)
    await asyncio.wait_for(asyncio.gather(*(limiter.check("a") for _ in range(5))), 1.0)
    assert shared.calls == 3  # one probe; the five others were counted locally meanwhile
    shared.hung.clear()
    shared.release.set()
    await probe
    now[0] += SHARED_RETRY_S
    await limiter.check("a")  # the probe after the next back-off finds it working again
    await limiter.check("a")
    assert shared.calls == 5 and limiter.fallbacks == 12
