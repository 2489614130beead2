"""PatientRegistry contract: identifiers sealed, teams listed, erasure shreds."""

import pytest

from twin import errors
from twin.domain.patients import Identifiers

ADA = Identifiers("Ada Canary-Lovelace", "1980-12-10", "MRN-CANARY-001", "ada@example.org")


async def test_create_read_list_erase(patient_registry):
    pid = await patient_registry.create(ADA, care_team="team-1")
    other = await patient_registry.create(
        Identifiers("B", "1990-01-01", "MRN-2"), care_team="team-1"
    )
    await patient_registry.create(Identifiers("C", "1991-01-01", "MRN-3"), care_team="team-2")
    assert pid.startswith("pt_") and "Ada" not in pid
    assert await patient_registry.identifiers(pid) == ADA
    assert await patient_registry.care_team(pid) == "team-1"
    assert set(await patient_registry.list_for_team("team-1")) == {pid, other}
    assert await patient_registry.erase(pid)
    assert await patient_registry.care_team(pid) is None
    assert await patient_registry.list_for_team("team-1") == [other]
    with pytest.raises(errors.KeyAccessError):
        await patient_registry.identifiers(pid)
    assert not await patient_registry.erase("pt_unknown")
    with pytest.raises(errors.InvalidInputError, match="no such patient"):
        await patient_registry.identifiers("pt_unknown")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "", "birth_date": "1980-01-01", "mrn": "M"},
        {"name": "X", "birth_date": "2999-01-01", "mrn": "M"},
        {"name": "X", "birth_date": "01/02/1980", "mrn": "M"},
        {"name": "X", "birth_date": "1980-01-01", "mrn": "M" * 65},
    ],
)
def test_invalid_identifiers_are_refused_without_echoing_them(kwargs):
    with pytest.raises(errors.ObservationRangeError) as info:
        Identifiers(**kwargs)
    assert info.value.value == "<redacted>"
    for value in kwargs.values():
        if len(value) > 3:
            assert value not in str(info.value)


async def test_no_identifier_reaches_the_sqlite_file(tmp_path, sqlite_db, key_provider):
    from storage.sealed import EnvelopeSealer
    from storage.sqlite import SqliteDataKeyStore, SqlitePatientRegistry

    registry = SqlitePatientRegistry(
        sqlite_db, EnvelopeSealer(key_provider, SqliteDataKeyStore(sqlite_db))
    )
    await registry.create(ADA, care_team="team-1")
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("novamind.db*"))
    for canary in (b"Canary", b"MRN-CANARY", b"1980-12-10", b"ada@example"):
        assert canary not in raw


async def test_team_listing_pages_by_id(patient_registry):
    ids = sorted(
        [
            await patient_registry.create(Identifiers("P", "1990-01-01", f"M{i}"), care_team="t")
            for i in range(5)
        ]
    )
    first = await patient_registry.list_for_team("t", limit=2)
    second = await patient_registry.list_for_team("t", after=first[-1], limit=2)
    third = await patient_registry.list_for_team("t", after=second[-1], limit=2)
    assert first + second + third == ids
    assert await patient_registry.list_for_team("t", after=ids[-1]) == []


async def test_identifier_links_find_one_live_patient_and_go_with_erasure(patient_registry):
    enrolled = Identifiers("D", "1985-05-05", "MRN-4", enrolled_at="2024-03-01T09:00:00+01:00")
    pid = await patient_registry.create(enrolled, care_team="team-1", links=["il_a", "il_b"])
    other = await patient_registry.create(ADA, care_team="team-1", links=["il_c"])
    assert (await patient_registry.identifiers(pid)).enrolled_at == "2024-03-01T09:00:00+01:00"
    assert await patient_registry.find(["il_a", "il_c", "il_x"]) == {"il_a": pid, "il_c": other}
    # An identifier names one patient: a second registration with it stores nothing.
    before = await patient_registry.list_for_team("team-2")
    with pytest.raises(errors.IdentifierTakenError):
        await patient_registry.create(ADA, care_team="team-2", links=["il_new", "il_b"])
    assert await patient_registry.list_for_team("team-2") == before
    assert await patient_registry.find(["il_new"]) == {}
    with pytest.raises(errors.IdentifierTakenError):
        await patient_registry.link(other, ["il_d", "il_a"], identifiers=ADA)
    assert await patient_registry.find(["il_d"]) == {}
    assert await patient_registry.identifiers(other) == ADA  # nothing stored
    more = Identifiers("D", "1985-05-05", "MRN-4", external=(("s", "a"), ("s", "d")))
    await patient_registry.link(pid, ["il_a", "il_d"], identifiers=more)  # held ones kept
    assert await patient_registry.find(["il_d"]) == {"il_d": pid}
    assert (await patient_registry.identifiers(pid)).external == (("s", "a"), ("s", "d"))
    assert await patient_registry.erase(pid)
    assert await patient_registry.find(["il_a", "il_b", "il_d"]) == {}
    with pytest.raises(errors.KeyAccessError):
        await patient_registry.link(pid, ["il_e"], identifiers=more)
    # Once erased, the identifiers are free: a new registration may take them.
    again = await patient_registry.create(ADA, care_team="team-1", links=["il_a"])
    assert await patient_registry.find(["il_a"]) == {"il_a": again}


@pytest.mark.parametrize("when", ["2024-03-01", "2024-03-01T09:00:00", "yesterday"])
def test_an_enrolment_needs_an_offset(when):
    with pytest.raises(errors.ObservationRangeError, match="enrolled_at"):
        Identifiers("X", "1980-01-01", "M", enrolled_at=when)
