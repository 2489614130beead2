"""Running boto3 calls off the event loop, with S3's errors mapped to the service's."""

from __future__ import annotations

import asyncio
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from twin import errors

__all__ = ["CONFLICT", "run"]

#: What :func:`run` returns when S3 refused a conditional write (another writer was first).
CONFLICT = object()
_CONFLICTS = ("PreconditionFailed", "ConditionalRequestConflict")


async def run(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` in a worker thread.

    Returns:
        Its result, or :data:`CONFLICT` when a conditional write lost to another writer.

    Raises:
        StorageUnavailableError: Any other S3 or connection error (retry).
    """
    try:
        return await asyncio.to_thread(fn, *args)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in _CONFLICTS:
            return CONFLICT
        raise errors.StorageUnavailableError(f"S3 error {code}; retry") from None
    except BotoCoreError as exc:
        raise errors.StorageUnavailableError(f"S3 unavailable ({type(exc).__name__})") from None
