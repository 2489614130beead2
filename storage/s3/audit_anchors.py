"""Audit-chain anchors in S3 under Object Lock (COMPLIANCE): one object per anchor.

The bucket has Object Lock enabled (Terraform: ``terraform/modules/storage``, which also sets
a COMPLIANCE default retention). Each anchor is written with its own
``ObjectLockMode=COMPLIANCE`` and ``ObjectLockRetainUntilDate`` (now + the retention), so no
one, the account's root included, can delete the object's version or shorten its retention
until then. The key ``<prefix>/<entries, 20 digits>-<head hash>.json`` sorts by chain length;
a second PUT to a key adds a version and never replaces the first (the bucket is versioned,
and a locked version cannot be removed), so reading lists every *version* of every key: a
later object under the same key cannot hide an earlier anchor.

An object that does not parse as an anchor, or whose key disagrees with its body, is an error
(:class:`~twin.errors.AuditAnchorCorruptError`), never skipped.

Why boto3: the AWS SDK itself; calls run in a worker thread to keep the event loop free.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from storage.s3.calls import run
from twin import errors
from twin.domain.audit import AuditAnchor, anchor_key

__all__ = ["MAX_RETENTION_DAYS", "S3AuditAnchorStore"]

#: Longest retention accepted, days (100 years, S3's own limit being far beyond any need).
MAX_RETENTION_DAYS = 36_500
#: Largest anchor object read, bytes (an anchor is about 150).
_MAX_BODY = 4096
#: Parallel GETs when reading every anchor.
_READERS = 8
_KEY = re.compile(r"(\d{20})-([0-9a-f]{64})\.json")


class S3AuditAnchorStore:
    """A :class:`twin.ports.AuditAnchorStore` in an Object-Lock bucket.

    Args:
        client: A boto3 S3 client.
        bucket: Bucket name (Object Lock enabled, hence versioned).
        prefix: Key prefix (one per environment).
        retention_days: Each anchor's COMPLIANCE retention, days (1 to 36,500).
        kms_key_id: KMS key for SSE-KMS (``None``: the bucket default).
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        *,
        prefix: str = "audit-anchors",
        retention_days: int,
        kms_key_id: str | None,
    ) -> None:
        if not 1 <= retention_days <= MAX_RETENTION_DAYS:
            raise errors.ConfigurationError(
                f"audit anchor retention: 1 to {MAX_RETENTION_DAYS} days"
            )
        self._s3 = client
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._retention = timedelta(days=retention_days)
        self._kms = kms_key_id

    def _key(self, anchor: AuditAnchor) -> str:
        return f"{self._prefix}/{anchor.entries:020d}-{anchor.head_hash}.json"

    def _put(self, anchor: AuditAnchor) -> None:
        body = json.dumps(
            {"entries": anchor.entries, "head_hash": anchor.head_hash, "at": anchor.at},
            sort_keys=True,
        ).encode()
        extra: dict[str, Any] = {"ServerSideEncryption": "aws:kms"}
        if self._kms is not None:
            extra["SSEKMSKeyId"] = self._kms
        self._s3.put_object(
            Bucket=self._bucket,
            Key=self._key(anchor),
            Body=body,
            ContentType="application/json",
            ObjectLockMode="COMPLIANCE",
            ObjectLockRetainUntilDate=datetime.now(UTC) + self._retention,
            **extra,
        )

    def _versions(self) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        paginator = self._s3.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=f"{self._prefix}/"):
            for version in page.get("Versions", []):
                found.append((version["Key"], version["VersionId"]))
            # A delete marker hides a key from plain listings, never its locked versions: they
            # are listed above and read by version id.
        return found

    def _read(self, key: str, version: str) -> AuditAnchor:
        name = key.rsplit("/", 1)[-1]
        match = _KEY.fullmatch(name)
        if match is None:
            raise errors.AuditAnchorCorruptError(f"audit anchor object {key!r}: not an anchor name")
        got = self._s3.get_object(Bucket=self._bucket, Key=key, VersionId=version)
        with got["Body"] as stream:
            raw = stream.read(_MAX_BODY + 1)
        try:
            if len(raw) > _MAX_BODY:
                raise ValueError("too large")
            data = json.loads(raw)
            anchor = AuditAnchor(data["entries"], data["head_hash"], data["at"])
        except (ValueError, TypeError, KeyError, errors.InvalidInputError):
            raise errors.AuditAnchorCorruptError(
                f"audit anchor object {key!r} (version {version}) is damaged"
            ) from None
        if (anchor.entries, anchor.head_hash) != (int(match.group(1)), match.group(2)):
            raise errors.AuditAnchorCorruptError(
                f"audit anchor object {key!r} (version {version}) disagrees with its name"
            )
        return anchor

    def _all(self) -> list[AuditAnchor]:
        versions = self._versions()
        with ThreadPoolExecutor(max_workers=_READERS) as pool:
            anchors = list(pool.map(lambda kv: self._read(*kv), versions))
        return sorted(anchors, key=anchor_key)

    async def put(self, anchor: AuditAnchor) -> None:
        """Write the anchor under COMPLIANCE retention (a new version if the key exists).

        Raises:
            StorageUnavailableError: S3 refused or could not be reached (retry).
        """
        await run(self._put, anchor)

    async def all(self) -> list[AuditAnchor]:
        """Every version of every anchor object, sorted by ``entries`` then ``at``.

        Raises:
            AuditAnchorCorruptError: An object is not a readable anchor.
            StorageUnavailableError: S3 could not be reached (retry).
        """
        result: list[AuditAnchor] = await run(self._all)
        return result
