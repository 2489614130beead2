"""Scheduled backups: archives named by their UTC time under a backup root, and their pruning.

``novamind backup --scheduled`` (the ``novamind-backup`` CronJob, hourly) writes a new archive
(:func:`deployments.ops.backup.backup`, format unchanged) under the setting ``backup_root`` and
prunes the old ones; ``novamind dr-drill`` restores the newest. A root is a folder or
``s3://bucket/prefix`` (default ``data_dir/backups``); outside ``local`` it must be S3: a folder
in a pod is lost with the pod.

Names: ``20261205T220000Z-<first 8 hex of the backup id>``: the UTC time the backup started, so
names sort by age. What makes an archive complete is its manifest, always stored last:

- folder: the archive is written in ``.partial-<time>-<random>`` and renamed to its name once
  whole (a rename is atomic), so a named folder is complete; one without a manifest (copied by
  hand, cut short) is treated as incomplete all the same;
- S3: the archive is written to a temporary local folder, its parts uploaded (SSE-KMS) and the
  manifest last, then the local folder is removed; a name without ``manifest.json`` is an
  upload in progress, or one that failed.

Pruning keeps the newest ``backup_keep`` (at least 2) complete archives that are at most
``backup_keep_days`` old, and always the newest complete one, whatever its age, and the one the
run just wrote. Incomplete archives are never counted as backups, and are removed only when
nothing was written to them for a day (an upload of a concurrent run is never taken for a
failed one). Deleting an archive removes its manifest first, so one whose deletion stops
half-way is incomplete, never a damaged backup.

Names that cannot be trusted for ordering are left alone, never pruned and never restored:
a name that matches the pattern but is not a real time (``20261399T999999Z-...``) is skipped
with a warning; a name later than :data:`FUTURE_TOLERANCE` past the run's time (a run on a
host whose clock was wrong) is reported (:attr:`ScheduledBackup.future`) and ignored. Were it
ordered by its name, it would stay "the newest" for as long as its time lies ahead: every
newer archive would be pruned behind it and the drill would keep restoring it.

Why boto3 directly here (as ``deployments.stores`` builds its clients): these are the
operations tools' own files, not a store behind a port; calls go through
:func:`storage.s3.calls.run` (off the event loop, S3 errors as ``StorageUnavailableError``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from deployments.ops.backup import BackupReport, backup
from deployments.stores import aws_client, s3_location
from storage.s3.calls import run
from twin import errors
from twin.settings import TwinSettings

__all__ = [
    "ABANDONED_AFTER",
    "FUTURE_TOLERANCE",
    "MANIFEST",
    "MIN_KEEP",
    "ArchiveRoot",
    "LocalArchiveRoot",
    "S3ArchiveRoot",
    "ScheduledBackup",
    "StoredArchive",
    "archive_name",
    "archive_root",
    "in_future",
    "newest_complete",
    "prune",
    "prune_plan",
    "scheduled_backup",
]

MANIFEST = "manifest.json"
#: An incomplete archive untouched for this long is a failed run's, and is removed.
ABANDONED_AFTER = timedelta(days=1)
#: An archive named later than this past the run's time is a wrong clock's: not ordered by.
#: An hour: a run that started while this one was running (by hand, or the next hourly one)
#: is newer than this run's start, but not by more than the schedule's interval.
FUTURE_TOLERANCE = timedelta(hours=1)
#: The fewest archives kept by count: with one, a new archive replaces the only backup while a
#: drill may be copying it, and a bad newest archive leaves nothing to fall back on.
MIN_KEEP = 2
_LOG = logging.getLogger("novamind.backup")
_STAMP = "%Y%m%dT%H%M%SZ"
_NAME = re.compile(r"^(?P<at>[0-9]{8}T[0-9]{6}Z)-[0-9a-f]{8}$")
_PARTIAL = re.compile(r"^\.partial-(?P<at>[0-9]{8}T[0-9]{6}Z)-[0-9a-f]{8}$")
#: Files of an archive: ``manifest.json`` and ``<part>.nmb`` (no folders, no other names).
_FILE = re.compile(r"^[A-Za-z0-9_\-]+\.nmb$|^manifest\.json$")


def archive_name(started: datetime, backup_id: str) -> str:
    """The archive's name: its UTC start time and the first 8 hex digits of its id."""
    return f"{started.astimezone(UTC).strftime(_STAMP)}-{backup_id.replace('-', '')[:8]}"


def _parse_time(stamp: str, name: str, where: str) -> datetime | None:
    """The time a name carries; ``None`` (and a warning) when it is not a real time."""
    try:
        return datetime.strptime(stamp, _STAMP).replace(tzinfo=UTC)
    except ValueError:
        # Not written by a scheduled run: never ordered, pruned or restored, and never the
        # reason a listing fails (that would stop pruning for good).
        _LOG.warning("%s: %r is not a scheduled archive's name (no such time); left alone",
                     where, name)  # fmt: skip
        return None


@dataclass(frozen=True, slots=True)
class StoredArchive:
    """An archive (or the remains of one) under a backup root.

    Attributes:
        name: Its name (``<time>-<id>``, or ``.partial-...`` for one being written to a folder).
        at: The UTC time its backup started (from the name).
        complete: Whether its manifest is there (only then is it a backup).
        touched: The newest write to any of its files, UTC.
    """

    name: str
    at: datetime
    complete: bool
    touched: datetime


class ArchiveRoot(Protocol):
    """Where scheduled archives are kept: a folder or an S3 prefix."""

    #: How the root is named in reports (``s3://bucket/prefix`` or the folder).
    where: str

    def staging(self, started: datetime) -> Any:
        """An async context manager: a new empty local folder for one archive, removed after."""
        ...

    async def store(self, name: str, folder: Path) -> None:
        """Keep the finished archive in ``folder`` under ``name`` (its manifest last)."""
        ...

    async def archives(self) -> list[StoredArchive]:
        """Every archive under the root, complete or not, oldest first."""
        ...

    async def fetch(self, name: str, into: Path) -> Path:
        """A local copy of the archive in ``into`` (created); returns ``into``."""
        ...

    async def delete(self, name: str) -> None:
        """Remove the archive, its manifest first."""
        ...


class LocalArchiveRoot:
    """Archives in a folder (embedded use, or a mounted volume)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.where = str(folder)

    @asynccontextmanager
    async def staging(self, started: datetime) -> AsyncIterator[Path]:
        """``.partial-<time>-<random>`` in the root: renamed by :meth:`store` once whole."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        work = self.folder / f".partial-{started.strftime(_STAMP)}-{uuid.uuid4().hex[:8]}"
        try:
            yield work
        finally:
            shutil.rmtree(work, ignore_errors=True)  # gone once stored; a failed run's, too

    async def store(self, name: str, folder: Path) -> None:
        """Rename the whole archive to its name (atomic within one file system)."""
        if not (folder / MANIFEST).is_file():
            raise errors.BackupCorruptError(f"{folder}: no manifest, not a finished archive")
        folder.rename(self.folder / name)

    async def archives(self) -> list[StoredArchive]:
        """Named archives and ``.partial-`` folders; anything else in the folder is left alone."""
        return await asyncio.to_thread(self._list)

    def _list(self) -> list[StoredArchive]:
        found: list[StoredArchive] = []
        if not self.folder.is_dir():
            return found
        for entry in self.folder.iterdir():
            match = _NAME.match(entry.name) or _PARTIAL.match(entry.name)
            if match is None or not entry.is_dir() or entry.is_symlink():
                continue
            at = _parse_time(match["at"], entry.name, self.where)
            if at is None:
                continue
            try:
                times = [entry.stat().st_mtime] + [p.stat().st_mtime for p in entry.iterdir()]
            except OSError:
                continue  # removed meanwhile (a concurrent prune)
            complete = _NAME.match(entry.name) is not None and _has_manifest(entry)
            found.append(
                StoredArchive(entry.name, at, complete, datetime.fromtimestamp(max(times), UTC))
            )
        return sorted(found, key=lambda a: (a.at, a.name))

    async def fetch(self, name: str, into: Path) -> Path:
        """A copy of the archive in ``into``: a prune that runs afterwards cannot pull it away.

        Raises:
            StorageUnavailableError: The archive was removed (a prune) before or while it was
                copied, or cannot be read: the copy is not used.
        """
        source = self.folder / _checked(name)
        try:
            await asyncio.to_thread(shutil.copytree, source, into)
        except OSError as exc:  # shutil.Error too: files that went while they were copied
            raise _gone(name, exc) from None
        # A prune deletes the manifest first: both still there means nothing went meanwhile.
        if not (_has_manifest(source) and _has_manifest(into)):
            raise _gone(name, None)
        return into

    async def delete(self, name: str) -> None:
        """The manifest first, then the rest."""
        folder = self.folder / name
        (folder / MANIFEST).unlink(missing_ok=True)
        await asyncio.to_thread(shutil.rmtree, folder, True)


class S3ArchiveRoot:
    """Archives under an S3 prefix: ``<prefix>/<name>/<file>``, uploaded with SSE-KMS.

    Args:
        client: A boto3 S3 client.
        bucket: Bucket name.
        prefix: Key prefix (no leading or trailing ``/``; may be empty).
        kms_key_id: KMS key for SSE-KMS (``None``: the bucket's default KMS key).
    """

    def __init__(self, client: Any, bucket: str, prefix: str, *, kms_key_id: str | None) -> None:
        self._s3 = client
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._kms = kms_key_id
        self.where = f"s3://{bucket}/{self._prefix}"

    def _key(self, name: str, file: str = "") -> str:
        return f"{self._prefix}/{name}/{file}" if self._prefix else f"{name}/{file}"

    @asynccontextmanager
    async def staging(self, started: datetime) -> AsyncIterator[Path]:
        """A temporary local folder, removed after the upload (or the failure)."""
        work = Path(tempfile.mkdtemp(prefix="novamind-backup-"))
        try:
            yield work / "archive"
        finally:
            shutil.rmtree(work, ignore_errors=True)

    async def store(self, name: str, folder: Path) -> None:
        """Upload every part, then the manifest: until it is there the archive is incomplete."""
        files = sorted(p.name for p in folder.iterdir())
        if MANIFEST not in files or not all(_FILE.match(f) for f in files):
            raise errors.BackupCorruptError(f"{folder}: not a finished archive")
        extra: dict[str, Any] = {"ServerSideEncryption": "aws:kms"}
        if self._kms is not None:
            extra["SSEKMSKeyId"] = self._kms
        for file in [f for f in files if f != MANIFEST] + [MANIFEST]:
            await run(self._upload, folder / file, self._key(name, file), extra)

    def _upload(self, path: Path, key: str, extra: dict[str, Any]) -> None:
        # upload_file: multipart above 8 MiB, each part retried by the transfer manager.
        self._s3.upload_file(str(path), self._bucket, key, ExtraArgs=extra)

    def _objects(self, under: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=under
        ):
            found.extend(page.get("Contents", []))
        return found

    async def archives(self) -> list[StoredArchive]:
        """Every ``<prefix>/<name>/`` with a well-formed name; complete when it has a manifest."""
        base = self._key("", "").rstrip("/")
        objects: list[dict[str, Any]] = await run(self._objects, f"{base}/" if base else "")
        grouped: dict[str, list[dict[str, Any]]] = {}
        for item in objects:
            rest = item["Key"][len(base) + 1 :] if base else item["Key"]
            name, _, file = rest.partition("/")
            if _NAME.match(name) and file:
                grouped.setdefault(name, []).append({**item, "File": file})
        found: list[StoredArchive] = []
        for name, items in grouped.items():
            at = _parse_time(name[:16], name, self.where)
            if at is None:
                continue
            found.append(
                StoredArchive(
                    name,
                    at,
                    any(i["File"] == MANIFEST and i.get("Size", 0) > 0 for i in items),
                    max(i["LastModified"] for i in items).astimezone(UTC),
                )
            )
        return sorted(found, key=lambda a: (a.at, a.name))

    async def fetch(self, name: str, into: Path) -> Path:
        """Download the archive's files into ``into`` (created).

        Raises:
            StorageUnavailableError: The archive was removed (a prune) before or while it was
                downloaded, or the bucket cannot be reached.
        """
        objects: list[dict[str, Any]] = await run(self._objects, self._key(_checked(name)))
        if not any(i["Key"].endswith(f"/{MANIFEST}") and i.get("Size", 0) > 0 for i in objects):
            raise _gone(name, None)
        into.mkdir(parents=True, exist_ok=True, mode=0o700)
        for item in objects:
            file = item["Key"].rsplit("/", 1)[-1]
            if _FILE.match(file):  # nothing else is an archive's; never a path outside `into`
                await run(self._s3.download_file, self._bucket, item["Key"], str(into / file))
        return into

    async def delete(self, name: str) -> None:
        """The manifest first (the archive is then incomplete), then its parts, 1000 a call."""
        await run(self._delete, name)

    def _delete(self, name: str) -> None:
        self._s3.delete_object(Bucket=self._bucket, Key=self._key(name, MANIFEST))
        keys = [item["Key"] for item in self._objects(self._key(name))]
        for start in range(0, len(keys), 1000):
            chunk = [{"Key": key} for key in keys[start : start + 1000]]
            self._s3.delete_objects(Bucket=self._bucket, Delete={"Objects": chunk, "Quiet": True})


def _has_manifest(folder: Path) -> bool:
    """A manifest that is there and not empty (as for S3: an empty object is no manifest)."""
    try:
        return (folder / MANIFEST).stat().st_size > 0
    except OSError:
        return False


def _gone(name: str, exc: BaseException | None) -> errors.StorageUnavailableError:
    why = f" ({type(exc).__name__})" if exc is not None else ""
    return errors.StorageUnavailableError(
        f"archive {name} could not be copied{why}: removed meanwhile (a prune) or unreadable; "
        "run again"
    )


def _checked(name: str) -> str:
    if not _NAME.match(name):
        raise errors.ConfigurationError(f"{name!r} is not a scheduled archive's name")
    return name


def archive_root(settings: TwinSettings, root: str | None = None) -> ArchiveRoot:
    """The backup root ``root`` names, else the setting ``backup_root``, else ``data_dir/backups``.

    Raises:
        ConfigurationError: An ``s3://`` root without a bucket, or a folder outside ``local``.
    """
    where = root if root is not None else settings.backup_root
    if where is not None and where.startswith("s3://"):
        bucket, prefix = s3_location(where, "")
        if not bucket:
            raise errors.ConfigurationError(f"backup root {where!r}: s3://bucket/prefix")
        client = aws_client(settings, "s3")
        return S3ArchiveRoot(client, bucket, prefix, kms_key_id=settings.s3_kms_key_id)
    if settings.environment != "local":
        raise errors.ConfigurationError(
            f"environment {settings.environment!r} keeps its backups in S3 (backup_root "
            "s3://bucket/prefix): a folder in a pod is lost with it"
        )
    return LocalArchiveRoot(Path(where) if where is not None else settings.data_dir / "backups")


def in_future(archives: Sequence[StoredArchive], *, now: datetime) -> list[str]:
    """Names later than :data:`FUTURE_TOLERANCE` past ``now``: a wrong clock's, not ordered by."""
    return [a.name for a in archives if a.at > now + FUTURE_TOLERANCE]


def _ordered(archives: Sequence[StoredArchive], now: datetime) -> list[StoredArchive]:
    """Complete archives that are not in the future, newest first."""
    ahead = set(in_future(archives, now=now))
    kept = [a for a in archives if a.complete and a.name not in ahead]
    return sorted(kept, key=lambda a: (a.at, a.name), reverse=True)


def prune_plan(
    archives: Sequence[StoredArchive],
    *,
    keep: int,
    keep_days: float,
    now: datetime,
    written: str | None = None,
) -> list[str]:
    """Which archives pruning removes.

    Args:
        archives: Everything under the root (:meth:`ArchiveRoot.archives`).
        keep: Complete archives kept by count (the newest), at least :data:`MIN_KEEP`.
        keep_days: Complete archives older than this many days go (the newest complete one
            never does).
        now: The current time, UTC.
        written: The archive the run just wrote: never removed, whatever else is found.

    Returns:
        Names to delete: complete archives past either limit, and incomplete ones untouched
        for :data:`ABANDONED_AFTER`. Archives named in the future (:func:`in_future`) are
        neither counted nor removed.

    Raises:
        ConfigurationError: ``keep`` is below :data:`MIN_KEEP`.
    """
    if keep < MIN_KEEP:
        raise errors.ConfigurationError(f"backup_keep: at least {MIN_KEEP} archives")
    oldest = now - timedelta(days=keep_days)
    drop = [
        a.name
        for i, a in enumerate(_ordered(archives, now))
        if i > 0 and (i >= keep or a.at < oldest) and a.name != written
    ]
    drop += [
        a.name
        for a in archives
        if not a.complete and now - a.touched > ABANDONED_AFTER and a.name != written
    ]
    return drop


def newest_complete(archives: Sequence[StoredArchive], *, now: datetime) -> StoredArchive | None:
    """The newest complete archive not named in the future (:func:`in_future`), or ``None``."""
    ordered = _ordered(archives, now)
    return ordered[0] if ordered else None


async def prune(
    root: ArchiveRoot,
    *,
    keep: int,
    keep_days: float,
    now: datetime | None = None,
    written: str | None = None,
) -> tuple[list[str], list[str]]:
    """Apply :func:`prune_plan` to the root.

    Returns:
        The names removed, and those left alone because they are named in the future.
    """
    at = now or datetime.now(UTC)
    found = await root.archives()
    plan = prune_plan(found, keep=keep, keep_days=keep_days, now=at, written=written)
    for name in plan:
        await root.delete(name)
    return plan, in_future(found, now=at)


@dataclass(frozen=True, slots=True)
class ScheduledBackup:
    """What one scheduled run did.

    Attributes:
        root: The backup root.
        name: The new archive's name.
        report: What the backup wrote.
        pruned: Names of the archives pruning removed.
        kept: Complete archives under the root afterwards (those named in the future too).
        future: Archives named later than :data:`FUTURE_TOLERANCE` past the run's time: neither
            counted, pruned nor restored (a wrong clock wrote them; remove them by hand once
            checked).
    """

    root: str
    name: str
    report: BackupReport
    pruned: list[str]
    kept: int
    future: list[str]


async def scheduled_backup(
    settings: TwinSettings, *, root: str | None = None, now: datetime | None = None
) -> ScheduledBackup:
    """Write a new archive under the backup root, then prune the root.

    Args:
        settings: The environment backed up (and ``backup_root``, ``backup_keep``,
            ``backup_keep_days``).
        root: Another backup root than the setting's.
        now: The run's start, UTC (names the archive; tests place archives in the past).

    Raises:
        ConfigurationError: The root is not usable.
        StorageUnavailableError: A store or the root cannot be reached. Raised before the new
            archive is stored, nothing is kept of it and nothing is pruned; raised while
            pruning, the new archive is kept (and so is whatever was not pruned yet).
    """
    started = now or datetime.now(UTC)
    archives = archive_root(settings, root)
    async with archives.staging(started) as work:
        report = await backup(settings, work)
        name = archive_name(started, report.backup_id)
        await archives.store(name, work)
    pruned, future = await prune(
        archives,
        keep=settings.backup_keep,
        keep_days=settings.backup_keep_days,
        now=started,
        written=name,
    )
    kept = sum(1 for a in await archives.archives() if a.complete)
    return ScheduledBackup(archives.where, name, report, pruned, kept, future)
