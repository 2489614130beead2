"""Checkpoints in S3: one object per (patient, sequence), newest wins, integrity checked.

Key: ``<prefix>/<sha256(patient id)[:32]>/<seq:020d>.ckpt`` (keys reveal no patient id).
Objects carry the sequence, model version and SHA-256 as metadata and are written with
``ServerSideEncryption=aws:kms`` (the payload is already envelope-encrypted; SSE-KMS is defence
in depth). A PUT is atomic, so a torn object cannot exist; an altered one fails the SHA-256
check. A write with a sequence at or below the newest stored one is refused, objects never
overwrite each other (distinct keys, ``IfNoneMatch``), reads take the highest sequence, and only
the newest ``keep`` objects are kept.

Why boto3: the AWS SDK itself; calls run in a worker thread to keep the event loop free.
"""

from __future__ import annotations

import hashlib
from typing import Any

from storage.s3.calls import run
from twin import errors, ports

__all__ = ["S3CheckpointStore"]


class S3CheckpointStore:
    """A :class:`twin.ports.CheckpointStore` on S3.

    Args:
        client: A boto3 S3 client.
        bucket: Bucket name.
        prefix: Key prefix.
        kms_key_id: KMS key for SSE-KMS (``None``: the bucket default).
        keep: Newest checkpoints kept per patient.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        *,
        prefix: str = "checkpoints",
        kms_key_id: str | None = None,
        keep: int = 2,
    ) -> None:
        self._s3 = client
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._kms = kms_key_id
        self._keep = max(1, keep)

    def _folder(self, patient_id: str) -> str:
        return f"{self._prefix}/{hashlib.sha256(patient_id.encode()).hexdigest()[:32]}/"

    def _keys(self, patient_id: str) -> list[tuple[int, str]]:
        found: list[tuple[int, str]] = []
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=self._folder(patient_id)):
            for item in page.get("Contents", []):
                stem = item["Key"].rsplit("/", 1)[-1].removesuffix(".ckpt")
                if stem.isdigit():
                    found.append((int(stem), item["Key"]))
        return sorted(found, reverse=True)

    def _put(self, checkpoint: ports.Checkpoint) -> bool:
        stored = self._keys(checkpoint.patient_id)
        if stored and stored[0][0] >= checkpoint.seq:
            return False
        extra: dict[str, Any] = {"ServerSideEncryption": "aws:kms"}
        if self._kms is not None:
            extra["SSEKMSKeyId"] = self._kms
        self._s3.put_object(
            Bucket=self._bucket,
            Key=f"{self._folder(checkpoint.patient_id)}{checkpoint.seq:020d}.ckpt",
            Body=checkpoint.data,
            IfNoneMatch="*",
            Metadata={
                "seq": str(checkpoint.seq),
                "model-version": checkpoint.model_version,
                "sha256": hashlib.sha256(checkpoint.data).hexdigest(),
            },
            **extra,
        )
        for _, key in self._keys(checkpoint.patient_id)[self._keep :]:
            self._s3.delete_object(Bucket=self._bucket, Key=key)
        return True

    def _latest(self, patient_id: str) -> ports.Checkpoint | None:
        stored = self._keys(patient_id)
        if not stored:
            return None
        seq, key = stored[0]
        obj = self._s3.get_object(Bucket=self._bucket, Key=key)
        data = obj["Body"].read()
        meta = obj.get("Metadata", {})
        if meta.get("seq") != str(seq) or meta.get("sha256") != hashlib.sha256(data).hexdigest():
            raise errors.CheckpointCorruptError(
                f"checkpoint at seq {seq} is damaged; rebuild from the event log"
            )
        return ports.Checkpoint(patient_id, seq, meta.get("model-version", ""), data)

    def _delete_all(self, patient_id: str) -> int:
        stored = self._keys(patient_id)
        for _, key in stored:
            self._s3.delete_object(Bucket=self._bucket, Key=key)
        return len(stored)

    async def put(self, checkpoint: ports.Checkpoint) -> bool:
        """Write unless a checkpoint with an equal or higher sequence exists."""
        # A conflict: another writer stored this very sequence first.
        return (await run(self._put, checkpoint)) is True

    async def latest(self, patient_id: str) -> ports.Checkpoint | None:
        """The newest checkpoint, verified."""
        result: ports.Checkpoint | None = await run(self._latest, patient_id)
        return result

    async def delete_all(self, patient_id: str) -> int:
        """Remove every checkpoint of a patient."""
        return int(await run(self._delete_all, patient_id))
