"""The erasure ledger in S3: one empty object per erased patient under a prefix.

Kept in a bucket replicated to the recovery region (by default the checkpoint bucket, under
its own prefix), never in a backup: every restore reads it and erases the patients it names
again (docs/operations.md). Keys are ``<prefix>/<patient id>``: patient ids are opaque. An
erasure every place completed is marked by ``<prefix>.done/<patient id>``; one without the mark
is redone by the next ledger apply.

Why boto3: the AWS SDK itself; calls run in a worker thread to keep the event loop free.
"""

from __future__ import annotations

from typing import Any

from storage.s3.calls import run
from twin import errors
from twin.domain.patients import is_patient_id

__all__ = ["S3ErasureLedger"]


class S3ErasureLedger:
    """A :class:`twin.ports.ErasureLedger` on S3.

    Args:
        client: A boto3 S3 client.
        bucket: Bucket name.
        prefix: Key prefix.
        kms_key_id: KMS key for SSE-KMS (``None``: the bucket default).
    """

    def __init__(
        self, client: Any, bucket: str, *, prefix: str = "erasure-ledger", kms_key_id: str | None
    ) -> None:
        self._s3 = client
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._kms = kms_key_id

    def _record(self, patient_id: str, prefix: str) -> None:
        extra: dict[str, Any] = {"ServerSideEncryption": "aws:kms"}
        if self._kms is not None:
            extra["SSEKMSKeyId"] = self._kms
        self._s3.put_object(Bucket=self._bucket, Key=f"{prefix}/{patient_id}", Body=b"", **extra)

    def _erased(self, prefix: str) -> list[str]:
        found: list[str] = []
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=f"{prefix}/"):
            for item in page.get("Contents", []):
                name = item["Key"].rsplit("/", 1)[-1]
                if is_patient_id(name):
                    found.append(name)
        return sorted(found)

    async def record(self, patient_id: str) -> None:
        """Note the patient as erased (idempotent: the object is the same)."""
        if not is_patient_id(patient_id):
            raise errors.InvalidInputError("patient_id: 1-64 letters, digits, '_' or '-'")
        await run(self._record, patient_id, self._prefix)

    async def erased(self) -> list[str]:
        """Every erased patient id, sorted."""
        result: list[str] = await run(self._erased, self._prefix)
        return result

    async def complete(self, patient_id: str) -> None:
        """Mark the patient's erasure complete (idempotent)."""
        if not is_patient_id(patient_id):
            raise errors.InvalidInputError("patient_id: 1-64 letters, digits, '_' or '-'")
        await run(self._record, patient_id, f"{self._prefix}.done")

    async def incomplete(self) -> list[str]:
        """Patients whose erasure was never marked complete, sorted."""
        begun: list[str] = await run(self._erased, self._prefix)
        done: list[str] = await run(self._erased, f"{self._prefix}.done")
        return sorted(set(begun) - set(done))
