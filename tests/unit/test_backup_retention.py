"""Which scheduled archives pruning removes (``deployments.ops.archives.prune_plan``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from deployments.ops.archives import (
    StoredArchive,
    archive_name,
    in_future,
    newest_complete,
    prune_plan,
)
from deployments.ops.drill import _snapshot_time, scratch_settings
from deployments.stores import key_provider, research_key_if_any
from twin import errors
from twin.settings import TwinSettings

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
    assert prune_plan(archives, keep=2, keep_days=35, now=NOW) == [stored(200).name]
    assert newest_complete(archives, now=NOW) == stored(100)


def test_an_incomplete_archive_is_not_counted_and_removed_only_once_abandoned():
    recent = stored(0, complete=False, touched_days_ago=0.1)  # an upload in progress
    abandoned = stored(5, complete=False, touched_days_ago=2)
    archives = [stored(1), stored(2), recent, abandoned]
    # keep=2: both complete archives stay; the upload in progress takes no place among them.
    assert prune_plan(archives, keep=2, keep_days=35, now=NOW) == [abandoned.name]
    assert newest_complete(archives, now=NOW) == stored(1)
    assert newest_complete([recent], now=NOW) is None


def test_at_least_two_archives_are_kept_by_count(tmp_path):
    with pytest.raises(errors.ConfigurationError, match="at least 2"):
        prune_plan([stored(0), stored(1)], keep=1, keep_days=35, now=NOW)
    with pytest.raises(ValidationError):
        TwinSettings(data_dir=tmp_path, backup_keep=1)


def test_an_archive_named_in_the_future_is_neither_newest_nor_counted():
    wrong_clock = stored(-100)  # a run on a host whose clock was 100 days ahead
    within_tolerance = stored(-0.02)  # half an hour ahead: a run that started after this one
    archives = [stored(0), stored(1), stored(2), wrong_clock]
    # Ordered by name, it would stay the newest and count as one of the two kept: each new
    # archive would be pruned behind it, and the drill would restore it.
    assert prune_plan(archives, keep=2, keep_days=35, now=NOW) == [stored(2).name]
    assert newest_complete(archives, now=NOW) == stored(0)
    assert in_future(archives, now=NOW) == [wrong_clock.name]
    assert newest_complete([*archives, within_tolerance], now=NOW) == within_tolerance


def test_the_archive_a_run_just_wrote_is_never_pruned():
    # A run placed in the past (or one that found newer archives) keeps what it wrote.
    archives = [stored(0), stored(1), stored(2)]
    plan = prune_plan(archives, keep=2, keep_days=35, now=NOW, written=stored(2).name)
    assert plan == []


def test_a_snapshot_time_without_a_zone_falls_back_to_the_archive_time():
    fallback = NOW - timedelta(hours=1)
    assert _snapshot_time({"snapshot_at": "2026-12-05T21:30:00"}, fallback) == fallback
    assert _snapshot_time({"snapshot_at": "nonsense"}, fallback) == fallback
    aware = "2026-12-05T21:30:00+00:00"
    assert _snapshot_time({"snapshot_at": aware}, fallback) == datetime.fromisoformat(aware)


def test_the_scratch_settings_write_nothing_of_the_live_environment(tmp_path):
    live = TwinSettings(
        data_dir=tmp_path / "live",
        redis_url="redis://cache:6379/0",
        otel_exporter_otlp_endpoint="http://collector:4318",
        erasure_ledger=str(tmp_path / "ledger"),
        audit_anchors=str(tmp_path / "anchors.jsonl"),
    )
    scratch = scratch_settings(live, tmp_path / "s")
    assert scratch.redis_url is None and scratch.otel_exporter_otlp_endpoint is None
    assert scratch.s3_bucket is None and scratch.mongo_url is None
    for where in (scratch.erasure_ledger, scratch.audit_anchors):
        assert where is not None and where.startswith(str(tmp_path / "s"))


async def test_the_live_key_folder_and_secrets_are_read_never_written(tmp_path):
    live = TwinSettings(data_dir=tmp_path / "live")
    (tmp_path / "live" / "keys").mkdir(parents=True)
    # An empty key folder: no key is created in it for the drill.
    with pytest.raises(errors.KeyUnavailableError, match="no key-encryption key"):
        await key_provider(live, create=False).current_kek_id()
    with pytest.raises(errors.KeyUnavailableError, match="no key-encryption key"):
        await key_provider(TwinSettings(data_dir=tmp_path / "none"), create=False).wrap(
            b"k" * 32, context="pt_1"
        )
    assert research_key_if_any(live) is None  # no research secret is generated either
    assert [p.name for p in (tmp_path / "live").rglob("*")] == ["keys"]
    assert not (tmp_path / "none").exists()
