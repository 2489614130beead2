"""TwinIndex contract: newest entry wins; search by severity and alert flag."""

from twin.ports import IndexEntry


def entry(pid: str, seq: int, severity: float, flags: tuple[str, ...] = ()) -> IndexEntry:
    return IndexEntry(pid, seq, 1400 + seq, severity, 2.0, 0.8, 0.4, flags, 1.0e9 + seq, 1399)


async def test_upsert_keeps_the_newest(twin_index):
    assert await twin_index.get("a") is None
    assert await twin_index.upsert(entry("a", 5, 12.0))
    assert not await twin_index.upsert(entry("a", 4, 20.0))
    assert await twin_index.upsert(entry("a", 6, 14.5, ("safety_item9",)))
    got = await twin_index.get("a")
    assert got == entry("a", 6, 14.5, ("safety_item9",))


async def test_search_by_severity_and_alert(twin_index):
    await twin_index.upsert(entry("a", 1, 9.0))
    await twin_index.upsert(entry("b", 1, 18.0, ("reliable_deterioration",)))
    await twin_index.upsert(entry("c", 1, 22.0, ("safety_item9", "stale_data")))
    await twin_index.upsert(entry("d", 1, 15.0, ("safety_item9",)))
    assert [e.patient_id for e in await twin_index.search(min_severity=15.0)] == ["c", "b", "d"]
    assert [e.patient_id for e in await twin_index.search(alert="safety_item9")] == ["c", "d"]
    both = await twin_index.search(min_severity=16.0, alert="safety_item9")
    assert [e.patient_id for e in both] == ["c"]
    assert [e.patient_id for e in await twin_index.search(limit=2)] == ["c", "b"]
    assert await twin_index.search(alert="safety") == []  # exact flags, not substrings


async def test_search_within_a_scope_and_by_update_time(twin_index):
    for pid, seq, severity in (("a", 1, 9.0), ("b", 2, 18.0), ("c", 3, 22.0)):
        await twin_index.upsert(entry(pid, seq, severity))
    scoped = await twin_index.search(patient_ids=["a", "c", "zz"])
    assert [e.patient_id for e in scoped] == ["c", "a"]
    assert await twin_index.search(patient_ids=[]) == []
    recent = await twin_index.search(updated_since=1.0e9 + 2)
    assert [e.patient_id for e in recent] == ["c", "b"]
    risky = IndexEntry("d", 4, 4, 12.0, 3.0, 0.9, 0.75, (), 1.0e9 + 4)
    await twin_index.upsert(risky)
    assert await twin_index.search(min_p_severe=0.5) == [risky]
    assert len(await twin_index.search(min_p_severe=0.4)) == 4


async def test_delete_removes_an_entry_for_good(twin_index):
    await twin_index.upsert(entry("a", 3, 19.0, ("safety_item9",)))
    await twin_index.upsert(entry("b", 1, 9.0))
    assert await twin_index.delete("a")
    assert await twin_index.get("a") is None
    assert [e.patient_id for e in await twin_index.search(alert="safety_item9")] == []
    assert not await twin_index.delete("a")
    assert await twin_index.get("b") is not None
