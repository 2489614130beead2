"""Patients from the data: matching by identifier, registration, and where time axes start."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from twin.domain.deidentify import Deidentifier
from twin.domain.patients import Identifiers
from twin.ingest.enrolment import (
    AMBIGUOUS,
    NO_TEAM,
    OTHER_BIRTH_DATE,
    OTHER_TEAM,
    UNKNOWN,
    PatientMatcher,
    Subject,
    record_start,
)
from twin.ingest.records import PatientFacts
from twin.testing import fakes

MRN = "http://hospital.example.org"
SSN = "http://hl7.org/fhir/sid/us-ssn"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2019, 5, 1, 9, tzinfo=UTC)
T2 = datetime(2021, 7, 3, tzinfo=UTC)


def facts(pid: str, *identifiers: tuple[str, str], url: str | None = None, name="Amy Baxter",
          birth="1987-02-20") -> PatientFacts:  # fmt: skip
    keys = (f"Patient/{pid}", *((url,) if url else ()))
    return PatientFacts(keys, identifiers, name, birth, identifiers[0][1])


def by_identifier(system: str, value: str) -> str:
    return "identifier:" + json.dumps([system, value], separators=(",", ":"))


@pytest.fixture
def registry() -> fakes.MemoryPatientRegistry:
    return fakes.MemoryPatientRegistry(fakes.PlainSealer())


@pytest.fixture
def matcher(registry) -> PatientMatcher:
    return PatientMatcher(registry, Deidentifier(b"k" * 32).identifier_link)


async def resolve(matcher, patients, subjects, firsts=None, **options):
    options = {"care_team": "team-1", "enrolled_at": None, "origin": None, "now": NOW} | options
    return await matcher.resolve(patients, subjects, firsts or {}, **options)


async def test_a_new_patient_is_registered_enrolled_at_the_first_record_and_matched_again(
    matcher, registry
):
    amy = facts("a1", (MRN, "M-1"), (SSN, "999-1"), url="urn:uuid:1")
    firsts = {"urn:uuid:1": T2, "Patient/a1": T1}
    found = await resolve(matcher, [amy], ["urn:uuid:1", "Patient/a1"], firsts)
    ((outcome, reason, pid),) = found.outcomes
    assert (outcome, reason) == ("appended", None)
    assert found.subjects == {"urn:uuid:1": Subject(pid, T1), "Patient/a1": Subject(pid, T1)}
    stored = await registry.identifiers(pid)
    assert (stored.name, stored.mrn, stored.enrolled_at) == ("Amy Baxter", "M-1", T1.isoformat())
    assert await registry.care_team(pid) == "team-1"
    # The same export again, or another carrying one of the identifiers: the same patient.
    again = await resolve(matcher, [amy], ["Patient/a1"], {"Patient/a1": T2})
    assert again.outcomes == [("duplicate", None, pid)]
    assert again.subjects == {"Patient/a1": Subject(pid, T1)}  # the stored enrolment stands
    other = facts("zz", (SSN, "999-1"), (MRN, "M-1b"))
    assert (await resolve(matcher, [other], [])).outcomes == [("duplicate", None, pid)]
    # ... whose new identifier is linked from then on.
    by_new = await resolve(matcher, [], [by_identifier(MRN, "M-1b")])
    assert by_new.subjects[by_identifier(MRN, "M-1b")] == Subject(pid, T1)


async def test_the_same_person_twice_in_a_job_is_one_registration(matcher, registry):
    in_bundle = facts("a1", (MRN, "M-1"), url="urn:uuid:1")
    in_ndjson = facts("a1", (MRN, "M-1"), (SSN, "999-1"))
    found = await resolve(matcher, [in_bundle, in_ndjson], ["urn:uuid:1"])
    (first, second) = found.outcomes
    assert first[0] == "appended" and second == ("duplicate", None, first[2])
    assert len(registry.rows) == 1 and found.subjects["urn:uuid:1"] == Subject(first[2], NOW)


async def test_identifiers_naming_two_patients_are_ambiguous_and_never_guessed(matcher, registry):
    await resolve(matcher, [facts("a", (MRN, "M-1"))], [])
    await resolve(matcher, [facts("b", (SSN, "999-2"))], [])
    both = facts("c", (MRN, "M-1"), (SSN, "999-2"))
    found = await resolve(matcher, [both], ["Patient/c"])
    assert found.outcomes == [("quarantined", AMBIGUOUS, None)]
    assert found.subjects == {"Patient/c": AMBIGUOUS}
    assert len(registry.rows) == 2


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"care_team": None}, NO_TEAM),
        ({"name": None}, "name: required"),
        ({"birth": None}, "birthDate: required"),
        ({"birth": "1850-01-01"}, "patient.birth_date"),
    ],
)
async def test_a_patient_that_cannot_be_registered_is_quarantined_with_its_records(
    matcher, registry, change, reason
):
    team = change.pop("care_team", "team-1")
    found = await resolve(
        matcher, [facts("a", (MRN, "M-1"), **change)], ["Patient/a"], care_team=team
    )
    ((outcome, why, pid),) = found.outcomes
    assert outcome == "quarantined" and reason in why and pid is None
    assert reason in found.subjects["Patient/a"] and registry.rows == {}
    assert "1850" not in why  # the value is PHI


async def test_subjects_of_registered_patients_by_id_or_identifier(matcher, registry):
    enrolled = await registry.create(
        Identifiers("B", "1990-01-01", "M-2", enrolled_at=T2.isoformat()),
        care_team="team-1",
        links=[Deidentifier(b"k" * 32).identifier_link(MRN, "M-2")],
    )
    legacy = await registry.create(Identifiers("C", "1990-01-01", "M-3"), care_team="team-1")
    erased = await registry.create(Identifiers("D", "1990-01-01", "M-4"), care_team="team-1")
    await registry.erase(erased)
    keys = [f"Patient/{enrolled}", by_identifier(MRN, "M-2"), f"Patient/{legacy}",
            f"Patient/{erased}", "Patient/pt_nobody", by_identifier(MRN, "nobody"),
            "urn:uuid:unknown", "Patient/not-ours"]  # fmt: skip
    found = await resolve(matcher, [], keys, care_team=None)
    assert found.subjects[f"Patient/{enrolled}"] == Subject(enrolled, T2)
    assert found.subjects[by_identifier(MRN, "M-2")] == Subject(enrolled, T2)
    assert "no enrolment instant" in found.subjects[f"Patient/{legacy}"]
    assert found.subjects[f"Patient/{erased}"] == UNKNOWN
    assert found.subjects["Patient/pt_nobody"] == UNKNOWN
    assert (
        "no registered patient has this identifier" in found.subjects[by_identifier(MRN, "nobody")]
    )
    assert "names no Patient of the job" in found.subjects["urn:uuid:unknown"]
    # A job's origin serves patients registered before enrolments were kept.
    with_origin = await resolve(matcher, [], [f"Patient/{legacy}"], origin=T1)
    assert with_origin.subjects[f"Patient/{legacy}"] == Subject(legacy, T1)


async def test_an_identifier_with_another_birth_date_is_never_matched(matcher, registry):
    await resolve(matcher, [facts("a", (MRN, "M-1"), birth="1987-02-20")], [])
    other = await resolve(matcher, [facts("b", (MRN, "M-1"), birth="1990-05-05")], ["Patient/b"])
    assert other.outcomes == [("quarantined", OTHER_BIRTH_DATE, None)]
    assert other.subjects["Patient/b"] == OTHER_BIRTH_DATE
    twins = await resolve(
        matcher,
        [
            facts("c", (MRN, "M-7"), birth="2001-01-01"),
            facts("d", (MRN, "M-7"), birth="2002-02-02"),
        ],
        [],
    )
    assert [o for o, _, _ in twins.outcomes] == ["quarantined", "quarantined"]
    assert len(registry.rows) == 1


def test_records_start_at_the_latest_stretch_a_twin_can_follow():
    def at(year: int, month: int = 1) -> datetime:
        return datetime(year, month, 1, tzinfo=UTC)

    assert record_start([at(2021), at(2019), at(2020, 6)], NOW) == at(2019)
    # A typed year 1, or a year in the future, does not start the axis.
    assert record_start([datetime(1, 1, 1, tzinfo=UTC), at(2019), at(2099)], NOW) == at(2019)
    # 1950 for 2020: more than ten years before the rest, so the rest is what the twin follows.
    assert record_start([at(1950), at(2020), at(2021)], NOW) == at(2020)
    # A history decades old and the current care: the current care.
    assert record_start([at(1993), at(1995), at(2015), at(2016)], NOW) == at(2015)
    assert record_start([datetime(1, 1, 1, tzinfo=UTC)], NOW) is None
    assert record_start([], NOW) is None


async def test_a_job_for_one_team_never_matches_another_teams_patient(matcher, registry):
    theirs = await resolve(matcher, [facts("a", (MRN, "M-1"))], [], care_team="team-a")
    pid = theirs.outcomes[0][2]
    ours = await resolve(
        matcher, [facts("a", (MRN, "M-1"))], ["Patient/a", by_identifier(MRN, "M-1")],
        care_team="team-b",
    )  # fmt: skip
    assert ours.outcomes == [("quarantined", OTHER_TEAM, None)]
    assert ours.subjects["Patient/a"] == OTHER_TEAM
    assert ours.subjects[by_identifier(MRN, "M-1")] == OTHER_TEAM
    # An administrator's job (no team) matches across teams.
    admin = await resolve(matcher, [], [by_identifier(MRN, "M-1")], care_team=None)
    assert admin.subjects[by_identifier(MRN, "M-1")].patient_id == pid


async def test_identifiers_learnt_from_a_match_are_linked_and_sealed(matcher, registry):
    first = await resolve(matcher, [facts("a", (MRN, "M-1"))], [])
    pid = first.outcomes[0][2]
    await resolve(matcher, [facts("a", (MRN, "M-1"), ("http://lab.example.org", "L-9"))], [])
    assert (await registry.identifiers(pid)).external == (
        (MRN, "M-1"), ("http://lab.example.org", "L-9")
    )  # fmt: skip
    link = Deidentifier(b"k" * 32).identifier_link("http://lab.example.org", "L-9")
    assert await registry.find([link]) == {link: pid}


async def test_a_malformed_identifier_key_names_no_one(matcher):
    found = await resolve(matcher, [], ["identifier:x", "identifier:[1,2,3]"], care_team=None)
    assert all("names no Patient" in reason for reason in found.subjects.values())


async def test_the_jobs_enrolment_instant_wins_over_the_first_record(matcher, registry):
    found = await resolve(
        matcher, [facts("a", (MRN, "M-9"))], ["Patient/a"], {"Patient/a": T1}, enrolled_at=T2
    )
    assert found.subjects["Patient/a"] == Subject(found.outcomes[0][2], T2)


async def test_an_erased_patient_is_not_matched_by_their_old_identifiers(matcher, registry):
    first = await resolve(matcher, [facts("a", (MRN, "M-1"))], [])
    pid = first.outcomes[0][2]
    await registry.erase(pid)
    again = await resolve(matcher, [facts("a", (MRN, "M-1"))], ["Patient/a"])
    assert again.outcomes[0][0] == "appended" and again.outcomes[0][2] != pid


async def test_two_patients_that_share_only_a_reference_stay_two_and_it_is_ambiguous(
    matcher, registry
):
    us = facts("example", (MRN, "M-1"))
    de = facts("example", ("http://fhir.de/sid/gkv/kvid-10", "X110"), name="Erika Muster")
    found = await resolve(matcher, [us, de], ["Patient/example"])
    assert [o for o, _, _ in found.outcomes] == ["appended", "appended"]
    assert found.outcomes[0][2] != found.outcomes[1][2]
    assert "two Patients of the job" in found.subjects["Patient/example"]
