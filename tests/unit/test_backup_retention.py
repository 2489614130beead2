"""Which scheduled archives pruning removes (``deployments.ops.archives.prune_plan``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from deployments.ops.archives import (
    StoredArchive,
    archive_name,
    newest_complete,
    prune_plan,
)

NOW = datetime(2026, 12, 5, 22, 0, tzinfo=UTC)


def stored(days_ago: float, *, complete: bool = True, touched_days_ago: float = 0) -> StoredArchive:
    at = NOW - timedelta(days=days_ago)
    return StoredArchive(
        archive_name(at, "0123abcd-0000-4000-8000-000000000000"),
        at.replace(microsecond=0),
        complete,
        NOW - timedelta(days=touched_days_ago),
    )


def test_names_sort_by_time_and_carry_the_backup_id():
    name = archive_name(datetime(2026, 12, 5, 23, 0, 1, tzinfo=UTC), "9f8e7d6c-5b4a-4000-8000-0")
    assert name == "20261205T230001Z-9f8e7d6c"
    assert sorted([stored(1).name, stored(0).name, stored(30).name]) == [
        stored(30).name,
        stored(1).name,
        stored(0).name,
    ]


def test_keeps_the_newest_by_count():
    archives = [stored(d) for d in (0, 1, 2, 3, 4)]
    assert prune_plan(archives, keep=3, keep_days=35, now=NOW) == [stored(3).name, stored(4).name]


def test_drops_the_old_ones_by_age_within_the_count():
    archives = [stored(d) for d in (0, 10, 36, 50)]
    assert prune_plan(archives, keep=14, keep_days=35, now=NOW) == [
        stored(36).name,
        stored(50).name,
    ]


def test_never_prunes_the_newest_complete_archive_however_old():
    archives = [stored(100), stored(200), stored(1, complete=False)]
    assert prune_plan(archives, keep=1, keep_days=35, now=NOW) == [stored(200).name]
    assert newest_complete(archives) == stored(100)


def test_an_incomplete_archive_is_not_counted_and_removed_only_once_abandoned():
    recent = stored(0, complete=False, touched_days_ago=0.1)  # an upload in progress
    abandoned = stored(5, complete=False, touched_days_ago=2)
    archives = [stored(1), stored(2), recent, abandoned]
    # keep=2: both complete archives stay; the upload in progress takes no place among them.
    assert prune_plan(archives, keep=2, keep_days=35, now=NOW) == [abandoned.name]
    assert newest_complete(archives) == stored(1)
    assert newest_complete([recent]) is None
