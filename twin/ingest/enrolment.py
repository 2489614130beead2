"""Who the records of a bulk-ingest job are about, and where each patient's time axis starts.

Matching (docs/ingest.md, "Patients from the data"):

1. The job's Patient resources are grouped into people: two that share an identifier (system
   and value) are one person (the same Patient in a Bundle and in an NDJSON file, say). Two
   that share only a reference (sources whose ids collide) are not; records with that
   reference are refused as ambiguous.
2. A person's identifiers are looked up in the registry by their keyed links
   (:meth:`twin.domain.deidentify.Deidentifier.identifier_link`):

   - they name one live patient: that patient (identifiers not yet linked are added);
   - they name several: ambiguous; the Patient resources and every record about them are
     quarantined, never guessed;
   - they name none: the person is registered in the job's care team, with their name, birth
     date and MRN sealed and their identifiers linked. A job without a care team registers no
     one (those Patients are quarantined with that reason).

3. A record's subject resolves through the job's Patients first (the references of an export
   are the export's own), then through the registry: an identifier reference by its link, a
   ``Patient/<id>`` of the registry's id form by that id. Anything else names no one.
4. A job for a care team matches by identifier only that team's patients (a Patient, or an
   identifier reference, whose identifier a patient of another team holds is quarantined): an
   identifier registered in one team is no licence to write into its records from another.
   A job without a care team (an administrator's) matches across teams.

Enrolment: a patient registered by a job is enrolled at the job's ``enrolled_at`` when given,
else at the enrolment their Patient resource states (the enrolment extension of a Novamind FHIR
export, :data:`twin.domain.codesystems.ENROLMENT_EXTENSION`: the export's days stay the same
days), else where their records in the job start (:func:`record_start`), else when the job ran. A
registered patient keeps the enrolment stored with their identifiers; one registered before
enrolments were kept uses the job's ``origin``, and without one their records are quarantined
with that reason.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from twin import errors, ports
from twin.domain.events import MAX_EVENT_GAP_DAYS
from twin.domain.patients import Identifiers
from twin.domain.time_axis import MAX_AHEAD
from twin.ingest.records import PATIENT_PREFIX, PatientFacts, patient_id_of
from twin.ingest.subjects import IDENTIFIER_PREFIX

__all__ = ["JobPatients", "PatientMatcher", "Subject", "identifier_of", "record_start"]

#: Registry reads at once while enrolments are looked up.
_CONCURRENT_READS = 16
AMBIGUOUS = "patient: the identifiers name several registered patients"
NO_TEAM = "patient: not registered, and the job names no care team to register patients to"
UNKNOWN = "patient: unknown or erased"
OTHER_BIRTH_DATE = "patient: an identifier names a patient with another birth date"
OTHER_TEAM = "patient: an identifier names a patient of another care team"
#: External identifiers kept (and linked) per patient.
_MAX_EXTERNAL = 32
#: Records outside these years do not set a new patient's enrolment (a typed year 1 would
#: push every real record past the end of the time axis); they are refused on their own.
_EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
TWO_PATIENTS = "subject: two Patients of the job with different identifiers have this reference"


def record_start(times: Sequence[datetime], now: datetime) -> datetime | None:
    """Where a subject's records start, for the enrolment of a patient a job registers.

    The first of the latest stretch of records with no gap longer than
    :data:`twin.domain.events.MAX_EVENT_GAP_DAYS` between two of them, among times from 1900 to
    a day after ``now`` (:data:`twin.domain.time_axis.MAX_AHEAD`; later ones are refused). A
    typed year (0001, 1950 for 2020) or a history decades before the current care does not
    start the time axis: those records are refused as before the enrolment, and the stretch
    the twin can follow is kept.

    Args:
        times: The subject's accepted record times (aware), in any order.
        now: When the job runs.

    Returns:
        The start, or ``None`` when no time is plausible.
    """
    latest = now + MAX_AHEAD
    kept = sorted(t for t in times if _EARLIEST <= t <= latest)
    if not kept:
        return None
    gap = timedelta(days=MAX_EVENT_GAP_DAYS)
    start = len(kept) - 1
    while start > 0 and kept[start] - kept[start - 1] <= gap:
        start -= 1
    return kept[start]


@dataclass(frozen=True, slots=True)
class Subject:
    """A resolved subject: the patient and the instant their time axis starts (aware, UTC)."""

    patient_id: str
    origin: datetime


@dataclass(slots=True)
class JobPatients:
    """What matching a job's patients found.

    Attributes:
        subjects: Subject key -> the subject, or the reason its records are refused.
        outcomes: Per Patient resource, in the order given: ``(outcome, reason, patient_id)``
            with outcome ``appended`` (registered), ``duplicate`` (matched) or
            ``quarantined``.
    """

    subjects: dict[str, Subject | str] = field(default_factory=dict)
    outcomes: list[tuple[str, str | None, str | None]] = field(default_factory=list)


@dataclass(slots=True)
class _Person:
    rows: list[int]
    keys: set[str]
    identifiers: dict[tuple[str, str], None]  # ordered set
    facts: list[PatientFacts]
    result: Subject | str = UNKNOWN
    registered: bool = False


def _people(patients: Sequence[PatientFacts]) -> list[_Person]:
    """Patient resources grouped into people (shared key or identifier), in first-seen order."""
    parent = list(range(len(patients)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    # Joined by identifiers only: two Patients that merely share an id (sources whose ids
    # collide) are not taken for one person; such a reference is ambiguous (see resolve).
    seen: dict[tuple[str, str], int] = {}
    for i, facts in enumerate(patients):
        for identifier in facts.identifiers:
            j = seen.setdefault(identifier, i)
            parent[root(i)] = root(j)
    groups: dict[int, _Person] = {}
    for i, facts in enumerate(patients):
        person = groups.setdefault(root(i), _Person([], set(), {}, []))
        person.rows.append(i)
        person.keys.update(facts.keys)
        person.identifiers.update(dict.fromkeys(facts.identifiers))
        person.facts.append(facts)
    return list(groups.values())


def identifier_of(key: str) -> tuple[str, str] | None:
    """The ``(system, value)`` of an identifier subject key, else ``None``."""
    if not key.startswith(IDENTIFIER_PREFIX):
        return None
    try:  # a table row's patient column may hold anything
        pair = json.loads(key[len(IDENTIFIER_PREFIX) :])
    except (ValueError, RecursionError):
        return None
    if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
        return None
    return pair[0], pair[1]


class PatientMatcher:
    """Matches and registers a job's patients (see the module docstring).

    Args:
        registry: The patient registry.
        link: ``(system, value) -> link``, the keyed digest the registry stores.
    """

    def __init__(self, registry: ports.PatientRegistry, link: Callable[[str, str], str]) -> None:
        self._registry = registry
        self._link = link

    async def resolve(
        self,
        patients: Sequence[PatientFacts],
        subjects: Iterable[str],
        first_seen: Mapping[str, datetime],
        *,
        care_team: str | None,
        enrolled_at: datetime | None,
        origin: datetime | None,
        now: datetime,
    ) -> JobPatients:
        """Match or register ``patients``; resolve every key of ``subjects``.

        Args:
            patients: The job's Patient resources, in order.
            subjects: The subject keys of the job's accepted records.
            first_seen: Subject key -> where its records start (:func:`record_start`).
            care_team: The team new patients are registered to (``None``: none registered).
            enrolled_at: Enrolment of the patients the job registers (default: first record).
            origin: Time origin of registered patients without a stored enrolment.
            now: When the job runs (enrolment of a new patient without records).
        """
        out = JobPatients(outcomes=[("", None, None)] * len(patients))
        people = _people(patients)
        by_key: dict[str, _Person | None] = {}  # None: a key two people claim
        by_identifier: dict[tuple[str, str], _Person] = {}
        for person in people:
            for key in person.keys:
                by_key[key] = person if by_key.get(key, person) is person else None
            by_identifier.update(dict.fromkeys(person.identifiers, person))
        for person in people:
            firsts = [first_seen[k] for k in self._keys_of(person) if k in first_seen]
            stated = [e for f in person.facts if (e := f.enrolment()) is not None]
            start = enrolled_at or (min(stated) if stated else min(firsts) if firsts else now)
            await self._settle(person, care_team, start, origin)
            for n, row in enumerate(person.rows):
                if isinstance(person.result, str):
                    out.outcomes[row] = ("quarantined", person.result, None)
                else:
                    fresh = person.registered and n == 0
                    out.outcomes[row] = (
                        "appended" if fresh else "duplicate", None, person.result.patient_id
                    )  # fmt: skip
        await self._subjects(out, set(subjects), by_key, by_identifier, origin, care_team)
        return out

    @staticmethod
    def _keys_of(person: _Person) -> list[str]:
        identifiers = [
            IDENTIFIER_PREFIX + json.dumps([s, v], separators=(",", ":"))
            for s, v in person.identifiers
        ]
        return [*person.keys, *identifiers]

    async def _settle(
        self, person: _Person, care_team: str | None, start: datetime, origin: datetime | None
    ) -> None:
        """Match ``person`` to one registered patient, or register them."""
        births = {f.birth_date for f in person.facts if f.birth_date}
        if len(births) > 1:  # one identifier, two birth dates: two people or a typing error
            person.result = OTHER_BIRTH_DATE
            return
        links = {self._link(s, v): None for s, v in person.identifiers}
        for _ in range(2):  # once more if a concurrent job registered them meanwhile
            holders = set((await self._registry.find(list(links))).values())
            if len(holders) > 1:
                person.result = AMBIGUOUS
                return
            if holders:
                (patient_id,) = holders
                matched = await self._match(person, patient_id, births, care_team, origin)
                if matched is None:
                    continue  # erased meanwhile: its links are gone
                person.result = matched
                return
            if care_team is None:
                person.result = NO_TEAM
                return
            try:
                identifiers = self._identifiers(person, start)
            except errors.InvalidInputError as exc:
                person.result = str(exc)
                return
            try:
                patient_id = await self._registry.create(
                    identifiers, care_team=care_team, links=list(links)
                )
            except errors.IdentifierTakenError:
                continue
            person.result, person.registered = Subject(patient_id, start), True
            return
        person.result = AMBIGUOUS

    async def _match(
        self,
        person: _Person,
        patient_id: str,
        births: set[str],
        care_team: str | None,
        origin: datetime | None,
    ) -> Subject | str | None:
        """The registered patient ``person``'s identifiers name, or why not (``None``: erased).

        A job for one care team matches only that team's patients: an identifier a patient of
        another team holds is no licence to write into that team's records. Identifiers not yet
        linked are linked and sealed with the patient (up to :data:`_MAX_EXTERNAL`).
        """
        try:
            registered = await self._registry.identifiers(patient_id)
            team = await self._registry.care_team(patient_id)
        except (errors.KeyAccessError, errors.InvalidInputError):
            return None
        if team is None:
            return None
        if care_team is not None and team != care_team:
            return OTHER_TEAM
        if births and registered.birth_date not in births:
            return OTHER_BIRTH_DATE
        known = dict.fromkeys(registered.external)
        new = [pair for pair in person.identifiers if pair not in known]
        room = new[: max(0, _MAX_EXTERNAL - len(known))]
        if room:
            updated = replace(registered, external=(*known, *room))
            try:
                await self._registry.link(
                    patient_id, [self._link(*pair) for pair in room], identifiers=updated
                )
            except errors.IdentifierTakenError:
                return AMBIGUOUS
            except errors.KeyAccessError:
                return None
        enrolled = self._enrolment_of(registered, origin)
        return enrolled if isinstance(enrolled, str) else Subject(patient_id, enrolled)

    @staticmethod
    def _identifiers(person: _Person, start: datetime) -> Identifiers:
        """The sealed identifiers of a new patient, from the first facts that give each."""
        name = next((f.name for f in person.facts if f.name), None)
        birth = next((f.birth_date for f in person.facts if f.birth_date), None)
        if name is None:
            raise errors.InvalidInputError("name: required to register the patient")
        if birth is None:
            raise errors.InvalidInputError("birthDate: required to register the patient")
        return Identifiers(
            name, birth, person.facts[0].mrn, enrolled_at=start.isoformat(),
            external=tuple(person.identifiers),
        )  # fmt: skip

    async def _enrolment(self, patient_id: str, origin: datetime | None = None) -> datetime | str:
        """A registered patient's enrolment (else ``origin``), or why there is none."""
        try:
            identifiers = await self._registry.identifiers(patient_id)
        except (errors.KeyAccessError, errors.InvalidInputError):
            return UNKNOWN
        return self._enrolment_of(identifiers, origin)

    @staticmethod
    def _enrolment_of(identifiers: Identifiers, origin: datetime | None) -> datetime | str:
        enrolled = identifiers.enrolment()
        if enrolled is not None:
            return enrolled
        if origin is not None:
            return origin
        return "patient: no enrolment instant (registered before enrolments; give an origin)"

    async def _subjects(
        self,
        out: JobPatients,
        keys: set[str],
        by_key: Mapping[str, _Person | None],
        by_identifier: Mapping[tuple[str, str], _Person],
        origin: datetime | None,
        care_team: str | None,
    ) -> None:
        by_id: dict[str, list[str]] = {}
        by_link: set[str] = set()  # patients found through an identifier: the team rule holds
        links: dict[str, str] = {}
        for key in keys:
            identifier = identifier_of(key)
            if key in by_key and by_key[key] is None:
                out.subjects[key] = TWO_PATIENTS
                continue
            person = by_key.get(key) or (by_identifier.get(identifier) if identifier else None)
            if person is not None:
                out.subjects[key] = person.result
            elif identifier is not None:
                links[key] = self._link(*identifier)
            elif key.startswith(PATIENT_PREFIX) and (pid := patient_id_of(key)) is not None:
                by_id.setdefault(pid, []).append(key)
            else:
                out.subjects[key] = "subject: the reference names no Patient of the job"
        found = await self._registry.find(list(links.values())) if links else {}
        for key, link in links.items():
            if link in found:
                by_id.setdefault(found[link], []).append(key)
                by_link.add(found[link])
            else:
                out.subjects[key] = "subject: no registered patient has this identifier"
        gate = asyncio.Semaphore(_CONCURRENT_READS)

        async def settle(pid: str) -> tuple[str, datetime | str]:
            async with gate:
                team = await self._registry.care_team(pid)
                if team is None:
                    return pid, UNKNOWN
                if pid in by_link and care_team is not None and team != care_team:
                    return pid, OTHER_TEAM
                return pid, await self._enrolment(pid, origin)

        for pid, enrolled in await asyncio.gather(*(settle(p) for p in by_id)):
            for key in by_id[pid]:
                out.subjects[key] = (
                    enrolled if isinstance(enrolled, str) else Subject(pid, enrolled)
                )
