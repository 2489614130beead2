"""Real time on the HTTP API: events placed by ISO 8601 instants, instants in every answer.

An event's ``effective`` (any UTC offset) is placed on the patient's time axis from their
enrolment; answers give instants (UTC) beside the twin days; the deprecated float ``day`` still
works and says so in its headers; research answers show dates shifted per patient, never real
ones.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

from tests.integration.conftest import bearer
from twin.domain.deidentify import MAX_DATE_SHIFT_DAYS, Deidentifier

ADMIN, SERVICE = bearer("admin", "root"), bearer("service", "etl")
CLINICIAN = bearer("clinician", "dr-a", ("team-1",))
ENROLLED = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


def _patient(mrn: str, enrolled_at: str | None = "2024-03-01T09:00:00+01:00") -> dict:
    body = {"name": "Ada Canary", "birth_date": "1980-12-10", "mrn": mrn, "care_team": "team-1"}
    return body if enrolled_at is None else {**body, "enrolled_at": enrolled_at}


def _phq9(key: str, total: int = 14, **when: object) -> dict:
    return {"idempotency_key": key, "payload": {"type": "phq9", "total": total}, **when}


async def _create(client, mrn: str, **kw) -> str:
    created = await client.post("/v1/patients", json=_patient(mrn, **kw), headers=ADMIN)
    assert created.status_code == 201, created.text
    return created.json()["patient_id"]


async def test_instants_in_any_offset_land_on_their_day_and_come_back_in_utc(api_env):
    client = api_env.http
    pid = await _create(client, "T-1")  # enrolled 2024-03-01 08:00 UTC, written at +01:00
    items = [
        _phq9("a", 16, effective="2024-03-02T14:00:00+05:30"),  # 08:30 UTC: day 1 + 30 min
        {"idempotency_key": "b", "effective": "2024-03-04T03:00:00-05:00",  # 08:00 UTC: day 3
         "loinc": {"code": "70274-6", "value": 11}},
        _phq9("c", 15, effective="2024-03-08T20:00:00Z"),  # day 7.5
    ]  # fmt: skip
    answer = await client.post(
        f"/v1/patients/{pid}/observations", json={"items": items}, headers=SERVICE
    )
    assert answer.status_code == 200, answer.text
    assert "deprecation" not in answer.headers and "sunset" not in answer.headers
    acks = answer.json()["acknowledged"]
    assert [a["day"] for a in acks] == [1 + 30 / 1440, 3.0, 7.5]
    assert [a["effective"] for a in acks] == [
        "2024-03-02T08:30:00Z", "2024-03-04T08:00:00Z", "2024-03-08T20:00:00Z"
    ]  # fmt: skip
    log = await api_env.services.events.read(pid)
    assert [e.day for e in log] == [a["day"] for a in acks]
    # A retry is a duplicate: the first event stands, and no day is claimed for it.
    again = await client.post(
        f"/v1/patients/{pid}/observations", json={"items": items[:1]}, headers=SERVICE
    )
    assert again.json()["acknowledged"] == [
        {"seq": 1, "duplicate": True, "rejected": None, "day": None, "effective": None}
    ]

    twin = (await client.get(f"/v1/patients/{pid}/twin", headers=CLINICIAN)).json()
    assert twin["day"] == 7
    assert twin["as_of"] == "2024-03-08T08:00:00Z"  # the start of twin day 7
    (row,) = (await client.get("/v1/caseload", headers=CLINICIAN)).json()["items"]
    assert (row["twin"]["day"], row["twin"]["as_of"]) == (7, "2024-03-08T08:00:00Z")
    forecast = await client.post(
        f"/v1/patients/{pid}/forecast", json={"weeks": 2}, headers=CLINICIAN
    )
    body = forecast.json()
    assert body["as_of_day"] == 7 and body["as_of"] == "2024-03-08T08:00:00Z"
    assert body["times"] == ["2024-03-15T08:00:00Z", "2024-03-22T08:00:00Z"]
    report = await client.post(
        f"/v1/patients/{pid}/scenarios",
        json={"title": "t", "weeks": 1, "scenarios": [{"name": "a"}, {"name": "b"}]},
        headers=CLINICIAN,
    )
    assert [f["as_of"] for f in report.json()["forecasts"]] == ["2024-03-08T08:00:00Z"] * 2
    feed = await client.get(f"/v1/patients/{pid}/events", headers=CLINICIAN)
    events = [
        json.loads(line[len("data: ") :])
        for line in feed.text.splitlines()
        if line.startswith("data: ")
    ]
    assert [e["effective"] for e in events] == [a["effective"] for a in acks]
    assert [e["day"] for e in events] == [a["day"] for a in acks]


async def test_alerts_carry_the_instant_of_their_day(api_env):
    client = api_env.http
    pid = await _create(client, "T-2")
    item9 = {"type": "phq9", "total": 18, "items": [3, 3, 3, 2, 2, 2, 1, 1, 1]}
    answer = await client.post(
        f"/v1/patients/{pid}/observations",
        json={"items": [{"idempotency_key": "q", "effective": "2024-03-03T08:00:00Z",
                         "payload": item9}]},
        headers=SERVICE,
    )  # fmt: skip
    (alert,) = [a for a in answer.json()["alerts"] if a["rule"] == "safety_item9"]
    assert alert["day"] == 2.0 and alert["at"] == "2024-03-03T08:00:00Z"


async def test_times_off_the_axis_or_without_an_offset_are_refused_and_store_nothing(api_env):
    client = api_env.http
    pid = await _create(client, "T-3")
    url = f"/v1/patients/{pid}/observations"
    tomorrow = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    cases = [
        ({"effective": "2024-03-05T09:30:00"}, "UTC offset is required"),  # a wall-clock time
        ({"effective": "2024-03-01T07:59:59Z"}, "before the patient's enrolment"),
        ({"effective": tomorrow}, "more than a day after the present"),
        ({"effective": "2024-03-05"}, "RFC 3339 date-time"),  # a day is no instant
        ({"effective": 1709627400}, "RFC 3339 date-time"),  # nor are Unix seconds
        ({"effective": "1709627400"}, "RFC 3339 date-time"),
        ({"effective": "2024-03-05T09:30:00Z", "day": 4.0}, "exactly one of effective or day"),
        ({}, "exactly one of effective or day"),
        # No UTC instant exists for these (a 500 before: the conversion overflowed).
        ({"effective": "0001-01-01T00:00:00+14:00"}, "years 1-9999 in UTC"),
        ({"effective": "9999-12-31T23:59:59-14:00"}, "years 1-9999 in UTC"),
    ]
    for when, why in cases:
        refused = await client.post(
            url, json={"items": [_phq9("ok", effective="2024-03-02T00:00:00Z"),
                                 _phq9("bad", **when)]},
            headers=SERVICE,
        )  # fmt: skip
        assert refused.status_code == 422, (when, refused.text)
        problem = refused.json()
        assert why in problem["detail"] and "items" in problem["detail"], (when, problem)
        assert refused.headers["content-type"] == "application/problem+json"
    assert await api_env.services.events.last_seq(pid) == 0
    # A patient registered before enrolments were kept has no axis to place an instant on.
    from twin.domain.patients import Identifiers

    old = await api_env.services.registry.create(
        Identifiers("Old Canary", "1950-01-01", "OLD-1"), care_team="team-1"
    )
    refused = await client.post(
        f"/v1/patients/{old}/observations",
        json={"items": [_phq9("x", effective="2024-03-05T09:30:00Z")]},
        headers=SERVICE,
    )
    assert refused.status_code == 422 and "no enrolment instant" in refused.json()["detail"]
    dated = await client.post(
        f"/v1/patients/{old}/observations", json={"items": [_phq9("x", day=2.0)]}, headers=SERVICE
    )
    assert dated.status_code == 200 and dated.json()["acknowledged"][0]["effective"] is None
    assert (await client.get(f"/v1/patients/{old}/twin", headers=CLINICIAN)).json()["as_of"] is None


async def test_the_float_day_is_deprecated_in_the_document_and_in_the_answer(api_env):
    client = api_env.http
    pid = await _create(client, "T-4")
    answer = await client.post(
        f"/v1/patients/{pid}/interventions",
        json={"items": [{"idempotency_key": "rx", "day": 1.5, "payload": {
            "type": "prescription", "drug": "sertraline", "mg_per_day": 50}}]},
        headers=CLINICIAN,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.headers["deprecation"] == "@1796428800"  # 2026-12-05T00:00:00Z (RFC 9745)
    assert answer.headers["sunset"] == "Wed, 30 Jun 2027 23:59:59 GMT"  # RFC 8594
    assert answer.json()["acknowledged"][0]["effective"] == "2024-03-02T20:00:00Z"
    doc = (await client.get("/openapi.json")).json()
    fields = doc["components"]["schemas"]["ObservationIn"]["properties"]
    assert fields["day"]["deprecated"] is True and "deprecated" not in fields["effective"]
    effective = next(b for b in fields["effective"]["anyOf"] if b.get("type") == "string")
    assert effective["format"] == "date-time" and effective["maxLength"] == 35
    for kind in ("observations", "interventions"):
        ok = doc["paths"][f"/v1/patients/{{patient_id}}/{kind}"]["post"]["responses"]["200"]
        assert {"Deprecation", "Sunset"} <= set(ok["headers"])
        assert not ok["headers"]["Deprecation"]["required"]  # only when `day` was used


async def test_research_answers_show_dates_shifted_per_patient_never_real_ones(tmp_path):
    from tests.integration.conftest import api_settings, open_env

    async with open_env(api_settings(tmp_path, research_dates="shifted")) as env:
        await _research_dates_are_shifted(env.http)


async def _research_dates_are_shifted(client) -> None:
    real: dict[str, tuple[str, date, date]] = {}
    deidentifier = Deidentifier(b"r" * 48)  # the test settings' research key
    for i, enrolled in enumerate(["2024-03-01T08:00:00Z", "2023-11-20T22:00:00-05:00"]):
        pid = await _create(client, f"R-{i}", enrolled_at=enrolled)
        start = datetime.fromisoformat(enrolled)
        items = [_phq9("a", 12, effective=(start + timedelta(days=2.25)).isoformat()),
                 _phq9("b", 10, effective=(start + timedelta(days=30.5)).isoformat())]  # fmt: skip
        posted = await client.post(
            f"/v1/patients/{pid}/observations", json={"items": items}, headers=SERVICE
        )
        assert posted.status_code == 200, posted.text
        # The real (UTC) dates the twin days of the first and the latest event began on.
        real[deidentifier.pseudonym(pid)] = (
            pid,
            (start + timedelta(days=2)).astimezone(UTC).date(),
            (start + timedelta(days=30)).astimezone(UTC).date(),
        )
    answer = await client.get("/v1/research/twins", headers=bearer("researcher", "r1"))
    rows = answer.json()["items"]
    assert {r["pseudonym"] for r in rows} == set(real)
    for row in rows:
        pid, first, latest = real[row["pseudonym"]]
        shifted_first = date.fromisoformat(row["shifted_record_start"])
        shifted_latest = date.fromisoformat(row["shifted_as_of"])
        # One secret shift for all of a patient's dates: the patient's own, keyed one.
        shift = deidentifier.date_shift(pid)
        assert shifted_first - first == shifted_latest - latest == timedelta(days=shift)
        assert 1 <= abs(shift) <= MAX_DATE_SHIFT_DAYS  # never the real date
        assert (shifted_latest - shifted_first).days == row["record_day"] == 28
        assert pid not in answer.text


async def test_a_safe_harbor_service_shows_researchers_record_days_only(tmp_path):
    from tests.integration.conftest import api_settings, open_env

    async with open_env(api_settings(tmp_path)) as env:  # the default
        pid = await _create(env.http, "S-1")
        items = [_phq9("a", 12, effective="2024-03-03T12:00:00Z"),
                 _phq9("b", 10, effective="2024-03-20T12:00:00Z")]  # fmt: skip
        await env.http.post(
            f"/v1/patients/{pid}/observations", json={"items": items}, headers=SERVICE
        )
        answer = await env.http.get("/v1/research/twins", headers=bearer("researcher", "r1"))
        (row,) = answer.json()["items"]
        assert row["record_day"] == 17
        assert row["shifted_as_of"] is None and row["shifted_record_start"] is None


def test_the_demo_patients_are_seeded_at_instants_in_the_past(tmp_path):
    from deployments.asgi import build_app
    from deployments.ops.platform import DEMO_TEAM, seed_demo_patients
    from tests.integration.conftest import api_settings
    from tests.servers import UvicornServer
    from twin.client import Client

    server = UvicornServer(build_app(api_settings(tmp_path / "data")))
    server.start(timeout_s=30)
    try:
        token = bearer("clinician", "demo", (DEMO_TEAM,))["Authorization"].split()[1]
        state = tmp_path / "demo" / "patients.json"
        with Client(server.url, token=token) as api:
            said: list[str] = []
            pids = seed_demo_patients(api, state, progress=said.append)
            assert len(pids) == 3 and len(said) == 3
            now = datetime.now(UTC)
            for pid in pids:
                enrolled = datetime.fromisoformat(api.patient(pid).enrolled_at)
                assert timedelta(days=57) <= now - enrolled < timedelta(days=58)
                events = list(api.events(pid))
                assert events and all(e.effective <= now for e in events)
                assert api.twin(pid).day >= 55  # eight weeks of the course, all in the past
            last = {pid: api.twin(pid).last_seq for pid in pids}
            assert seed_demo_patients(api, state, progress=said.append) == pids  # idempotent
            assert {pid: api.twin(pid).last_seq for pid in pids} == last
    finally:
        server.stop()
