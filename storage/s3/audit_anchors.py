"""Audit-chain anchors in S3 under Object Lock (COMPLIANCE): one object per anchor.

The bucket has Object Lock enabled (Terraform: ``terraform/modules/storage``, which also sets
a COMPLIANCE default retention, SSE-S3 by default, and a policy that refuses a PUT without
COMPLIANCE mode, without SSE-S3, or with a customer-provided key). Each anchor is written with
its own ``ObjectLockMode=COMPLIANCE`` and ``ObjectLockRetainUntilDate`` (now + the retention),
so no one, the account's root included, can delete the object's version or shorten its
retention until then.

The key carries the whole anchor::

    <prefix>/<entries, 20 digits>-<at, UTC, YYYYMMDDTHHMMSS.ffffffZ>-<head hash>.json

so reading the anchors is a listing of every *version* under the prefix, with no GET (the
body repeats the fields for people reading the bucket; it is never read back). Keys sort by
chain length, so the anchors from a length on (what anchoring needs: the latest) are a
listing of the keys from there on. A second PUT to
a key adds a version and never replaces the first (the bucket is versioned, and a locked
version cannot be removed); listing versions means a later object cannot hide an earlier one.

An object whose key is not an anchor's is reported unreadable, named by its place in the
listing and S3's own time of writing, never by its key (anyone holding the writer's role
chooses keys). Each anchor read carries S3's time of writing as ``recorded_at`` (the
version's LastModified), so an anchor dated ahead of it is told apart
(:func:`twin.domain.audit.anchoring_gaps`).

Why SSE-S3 and not KMS: anchors hold no PHI (lengths, hashes, times), and a KMS key scheduled
for deletion would make COMPLIANCE-locked objects unreadable for the rest of their retention.

Why boto3: the AWS SDK itself; calls run in a worker thread to keep the event loop free.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from storage.s3.calls import run
from twin import errors
from twin.domain.audit import REPORT_LIST_MAX, AnchorScan, AuditAnchor, anchor_key

__all__ = ["MAX_RETENTION_DAYS", "S3AuditAnchorStore"]

#: Longest retention accepted, days (100 years, S3's own limit being far beyond any need).
MAX_RETENTION_DAYS = 36_500
_AT = "%Y%m%dT%H%M%S.%fZ"
_NAME = re.compile(r"(\d{20})-(\d{8}T\d{6}\.\d{6}Z)-([0-9a-f]{64})\.json")


def _compact(at: str) -> str:
    return datetime.fromisoformat(at).astimezone(UTC).strftime(_AT)


def _from_name(name: str) -> AuditAnchor:
    """The anchor a key's last part names.

    Raises:
        InvalidInputError: Not an anchor's name.
    """
    match = _NAME.fullmatch(name)
    if match is None:
        raise errors.InvalidInputError("not an anchor's name")
    try:
        when = datetime.strptime(match.group(2), _AT).replace(tzinfo=UTC)
    except ValueError:
        raise errors.InvalidInputError("not an anchor's time") from None
    at = when.isoformat(timespec="milliseconds" if when.microsecond % 1000 == 0 else "auto")
    return AuditAnchor(int(match.group(1)), match.group(3), at)


class S3AuditAnchorStore:
    """A :class:`twin.ports.AuditAnchorStore` in an Object-Lock bucket.

    Args:
        client: A boto3 S3 client.
        bucket: Bucket name (Object Lock enabled, hence versioned).
        prefix: Key prefix (one per environment).
        retention_days: Each anchor's COMPLIANCE retention, days (1 to 36,500; the settings
            require six years outside local use).
        page_size: Versions per listing request (1 to 1,000, S3's most).
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        *,
        prefix: str = "audit-anchors",
        retention_days: int,
        page_size: int = 1000,
    ) -> None:
        if not 1 <= retention_days <= MAX_RETENTION_DAYS:
            raise errors.ConfigurationError(
                f"audit anchor retention: 1 to {MAX_RETENTION_DAYS} days"
            )
        if not 1 <= page_size <= 1000:
            raise errors.ConfigurationError("audit anchor listing page: 1 to 1000 versions")
        self._s3 = client
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._retention = timedelta(days=retention_days)
        self._page = page_size

    def _put(self, anchor: AuditAnchor) -> None:
        body = json.dumps(
            {"entries": anchor.entries, "head_hash": anchor.head_hash, "at": anchor.at},
            sort_keys=True,
        ).encode()
        self._s3.put_object(
            Bucket=self._bucket,
            Key=f"{self._prefix}/{anchor.entries:020d}-{_compact(anchor.at)}-{anchor.head_hash}.json",
            Body=body,
            ContentType="application/json",
            ObjectLockMode="COMPLIANCE",
            ObjectLockRetainUntilDate=datetime.now(UTC) + self._retention,
            ServerSideEncryption="AES256",
        )

    def _listed(self, min_entries: int) -> Iterator[dict[str, Any]]:
        """Every version under the prefix; from ``min_entries`` on, the current ones only.

        From a length on, ListObjectsV2's ``StartAfter`` (keys after a string that is no key)
        finds the keys; the versions of a key add nothing there (the key is the anchor). Only
        the whole listing, which verification reads, needs every version: a delete marker hides
        a key from ListObjectsV2, never a locked version from ListObjectVersions.
        """
        folder = f"{self._prefix}/"
        pages = {"PageSize": self._page}
        if min_entries > 0:
            # Sorts before every key of that length (a key sorts after its own prefix).
            after = f"{folder}{min_entries:020d}"
            paginator = self._s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(
                Bucket=self._bucket, Prefix=folder, StartAfter=after, PaginationConfig=pages
            ):
                yield from page.get("Contents", [])
            return
        paginator = self._s3.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=folder, PaginationConfig=pages):
            yield from page.get("Versions", [])  # delete markers are listed apart, unread

    def _scan(self, min_entries: int) -> AnchorScan:
        skip = len(self._prefix) + 1
        anchors: list[AuditAnchor] = []
        unreadable: list[str] = []
        count = 0
        for place, version in enumerate(self._listed(min_entries), start=1):
            try:
                anchor = _from_name(str(version["Key"])[skip:])
            except errors.InvalidInputError:
                count += 1
                if len(unreadable) < REPORT_LIST_MAX:
                    written = version.get("LastModified")
                    when = f", written {written:%Y-%m-%dT%H:%M:%SZ}" if written else ""
                    unreadable.append(f"object version {place} listed{when}")
                continue
            if anchor.entries >= min_entries:
                written = version.get("LastModified")
                if isinstance(written, datetime) and written.utcoffset() is not None:
                    # S3's own time of writing: whoever picks the key cannot set it.
                    anchor = replace(anchor, recorded_at=written)
                anchors.append(anchor)
        return AnchorScan(tuple(sorted(anchors, key=anchor_key)), tuple(unreadable), count)

    async def put(self, anchor: AuditAnchor) -> None:
        """Write the anchor under COMPLIANCE retention (a new version if the key exists).

        Raises:
            StorageUnavailableError: S3 refused or could not be reached (retry).
        """
        await run(self._put, anchor)

    async def scan(self, *, min_entries: int = 0) -> AnchorScan:
        """The anchors of at least ``min_entries`` entries: a listing from that length on.

        From a length above 0, an anchor written twice (two versions of its key) is listed
        once.

        Raises:
            StorageUnavailableError: S3 could not be reached (retry).
        """
        result: AnchorScan = await run(self._scan, min_entries)
        return result

    async def all(self) -> list[AuditAnchor]:
        """Every version of every anchor object, sorted by ``entries`` then ``at``.

        Raises:
            AuditAnchorCorruptError: An object under the prefix is not an anchor.
            StorageUnavailableError: S3 could not be reached (retry).
        """
        scan = await self.scan()
        if scan.unreadable_count:
            raise errors.AuditAnchorCorruptError(
                f"{scan.unreadable_count} object(s) under the anchor prefix are not anchors "
                f"({', '.join(scan.unreadable)})"
            )
        return list(scan.anchors)
