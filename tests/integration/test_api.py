"""The HTTP API through its routes: a clinician's day, bad input, erasure, break-glass."""

from __future__ import annotations

import hashlib
import json
import time

from tests.integration.conftest import bearer
from twin.domain.audit import verify_chain
from twin.domain.events import MAX_SEQ
from twin.service.access import DISCLOSURES, reason_digest

ADA = {
    "name": "Ada Canary",
    "birth_date": "1980-12-10",
    "mrn": "MRN-CANARY-1",
    "care_team": "team-1",
}
CLINICIAN = bearer("clinician", "dr-a", ("team-1",))
OTHER_CLINICIAN = bearer("clinician", "dr-b", ("team-2",))
ADMIN, SERVICE, RESEARCHER = (
    bearer("admin", "root"),
    bearer("service", "etl"),
    bearer("researcher", "r1"),
)
PHQ9_ITEM9 = {"type": "phq9", "total": 18, "items": [3, 3, 3, 2, 2, 2, 1, 1, 1]}


async def test_health(api_env):
    assert (await api_env.http.get("/health/liveness")).json() == {"status": "alive"}
    assert (await api_env.http.get("/health/readiness")).status_code == 200


async def test_a_clinicians_day_and_the_rules_around_it(api_env):
    client = api_env.http
    assert (await client.post("/v1/patients", json=ADA)).status_code == 401
    created = await client.post("/v1/patients", json=ADA, headers=CLINICIAN)
    assert created.status_code == 201
    pid = created.json()["patient_id"]
    read = await client.get(f"/v1/patients/{pid}", headers=CLINICIAN)
    assert read.json()["mrn"] == "MRN-CANARY-1"
    # Outside the care team: 404 (existence not revealed); wrong role: 403.
    for headers, status in (
        (OTHER_CLINICIAN, 404),
        (RESEARCHER, 403),
        (ADMIN, 200),
        (SERVICE, 403),
    ):
        assert (await client.get(f"/v1/patients/{pid}", headers=headers)).status_code == status
    items = [
        {"idempotency_key": "q1", "day": 0.5, "payload": PHQ9_ITEM9},
        {"idempotency_key": "g1", "day": 0.6, "loinc": {"code": "70274-6", "value": 11}},
        {
            "idempotency_key": "hr",
            "day": 0.7,
            "loinc": {"code": "40443-4", "value": 71, "unit": "/min"},
        },
        {
            "idempotency_key": "sl",
            "day": 0.8,
            "loinc": {"code": "93832-4", "value": 420, "unit": "min"},
        },
    ]
    ingested = await client.post(
        f"/v1/patients/{pid}/observations", json={"items": items}, headers=SERVICE
    )
    assert ingested.status_code == 200, ingested.text
    body = ingested.json()
    assert [a["seq"] for a in body["acknowledged"]] == [1, 2, 3, 4]
    assert [a["rule"] for a in body["alerts"] if a["status"] == "fired"] == ["safety_item9"]
    again = await client.post(
        f"/v1/patients/{pid}/observations", json={"items": items}, headers=SERVICE
    )
    assert [a["duplicate"] for a in again.json()["acknowledged"]] == [True] * 4
    drug = [
        {
            "idempotency_key": "rx",
            "day": 1.0,
            "payload": {"type": "prescription", "drug": "sertraline", "mg_per_day": 50},
        }
    ]
    wrong_route = await client.post(
        f"/v1/patients/{pid}/observations", json={"items": drug}, headers=CLINICIAN
    )
    assert wrong_route.status_code == 422
    assert (
        await client.post(
            f"/v1/patients/{pid}/interventions", json={"items": drug}, headers=CLINICIAN
        )
    ).json()["acknowledged"][0]["seq"] == 5
    twin = (await client.get(f"/v1/patients/{pid}/twin", headers=CLINICIAN)).json()
    assert twin["last_seq"] == 5 and 0 <= twin["p_episode"] <= 1
    assert twin["alert_flags"] == ["safety_item9"]
    forecast = await client.post(
        f"/v1/patients/{pid}/forecast", json={"weeks": 4}, headers=CLINICIAN
    )
    assert forecast.status_code == 200, forecast.text
    assert len(forecast.json()["phq9_quantiles"]) == 4
    # Every patient-data request, allowed or denied, is in the verified audit chain.
    entries = await api_env.services.audit.entries()
    assert verify_chain(entries).ok
    # anonymous create, create, read, 4 reads, 2 ingests, 2 more, twin, forecast
    assert len(entries) == 1 + 1 + 1 + 4 + 2 + 2 + 1 + 1
    assert sum(e.record.outcome == "denied" for e in entries) == 4


async def test_bad_requests_are_problems_that_echo_no_values(api_env):
    client = api_env.http
    pid = (await client.post("/v1/patients", json=ADA, headers=ADMIN)).json()["patient_id"]
    cases = [
        ({**ADA, "nickname": "x"}, "/v1/patients", 422),
        ({**ADA, "birth_date": "2999-99-99"}, "/v1/patients", 422),
        (
            {
                "items": [
                    {"idempotency_key": "k", "day": 0, "payload": {"type": "phq9", "total": 30}}
                ]
            },
            f"/v1/patients/{pid}/observations",
            422,
        ),
        (
            {"items": [{"idempotency_key": "k", "day": 0, "payload": {"type": "mood_ring"}}]},
            f"/v1/patients/{pid}/observations",
            422,
        ),
        (
            {
                "items": [
                    {"idempotency_key": "k", "day": 0, "loinc": {"code": "44261-6", "value": 9.5}}
                ]
            },
            f"/v1/patients/{pid}/observations",
            422,
        ),
        (
            {
                "items": [
                    {
                        "idempotency_key": "k",
                        "day": 0,
                        "loinc": {"code": "8867-4", "value": 60, "unit": "Hz"},
                    }
                ]
            },
            f"/v1/patients/{pid}/observations",
            422,
        ),
        ({"items": [{"idempotency_key": "k", "day": 0}]}, f"/v1/patients/{pid}/observations", 422),
        ({"weeks": 27}, f"/v1/patients/{pid}/forecast", 422),
    ]
    for body, url, status in cases:
        response = await client.post(url, json=body, headers=ADMIN)
        assert response.status_code == status, (url, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert "Ada Canary" not in response.text and "MRN-CANARY" not in response.text
    big = {
        "items": [
            {
                "idempotency_key": "k",
                "day": 0,
                "payload": {"type": "gad7", "total": 1, "pad": "x" * (2 << 20)},
            }
        ]
    }
    response = await client.post(f"/v1/patients/{pid}/observations", json=big, headers=ADMIN)
    assert response.status_code == 413

    async def stream():
        for _ in range(40):
            yield b"x" * 65536

    chunked = await client.post(
        f"/v1/patients/{pid}/observations",
        content=stream(),
        headers={**ADMIN, "content-type": "application/json"},
    )
    assert chunked.status_code == 413
    missing = await client.get("/v1/patients/pt_nobody/twin", headers=ADMIN)
    assert missing.status_code == 404 and missing.json()["status"] == 404
    unknown = await client.get("/v1/nothing-here", headers=ADMIN)
    assert (
        unknown.status_code == 404 and unknown.headers["content-type"] == "application/problem+json"
    )
    wrong_method = await client.put("/v1/patients", headers=ADMIN)
    assert wrong_method.status_code == 405


async def test_erasure_crypto_shreds_identifiers_reports_and_events(api_env):
    client = api_env.http
    pid = (await client.post("/v1/patients", json=ADA, headers=ADMIN)).json()["patient_id"]
    items = [{"idempotency_key": "q", "day": 0, "payload": {"type": "phq9", "total": 12}}]
    await client.post(f"/v1/patients/{pid}/observations", json={"items": items}, headers=ADMIN)
    report = await client.post(
        f"/v1/patients/{pid}/scenarios",
        json={"title": "dose", "weeks": 2, "scenarios": [{}, {"name": "b", "care": True}]},
        headers=CLINICIAN,
    )
    assert report.status_code == 201, report.text
    assert (await client.delete(f"/v1/patients/{pid}", headers=CLINICIAN)).status_code == 403
    erased = await client.delete(f"/v1/patients/{pid}", headers=ADMIN)
    # The scenario report and the record of the twin's prior set are the patient's documents.
    assert erased.json() == {"patient_id": pid, "erased": True, "documents_deleted": 2}
    assert (await client.get(f"/v1/patients/{pid}", headers=ADMIN)).status_code == 404
    for collection in ("scenario", "prior_assignment"):
        assert await api_env.services.documents.list(collection, patient_id=pid) == []
    # The log's rows go too: their idempotency keys and days are not sealed.
    assert (await api_env.services.events.last_seq(pid)) == 0
    assert await api_env.services.events.read(pid) == []
    actions = [e.record.action for e in await api_env.services.audit.entries()]
    assert actions.count("patient.erase") == 2


async def test_break_glass_is_bounded_audited_and_single_patient(api_env):
    client = api_env.http
    pid = (await client.post("/v1/patients", json=ADA, headers=ADMIN)).json()["patient_id"]
    other = (await client.post("/v1/patients", json={**ADA, "mrn": "M2"}, headers=ADMIN)).json()[
        "patient_id"
    ]
    assert (
        await client.get(f"/v1/patients/{pid}/twin", headers=OTHER_CLINICIAN)
    ).status_code == 404
    short = await client.post(
        f"/v1/patients/{pid}/break-glass", json={"reason": "x"}, headers=OTHER_CLINICIAN
    )
    assert short.status_code == 422  # a reason is required
    assert (
        await client.post(
            f"/v1/patients/{pid}/break-glass",
            json={"reason": "unconscious in the ED, needs history"},
            headers=RESEARCHER,
        )
    ).status_code == 403
    granted = await client.post(
        f"/v1/patients/{pid}/break-glass",
        json={"reason": "unconscious in the ED, needs history", "minutes": 5},
        headers=OTHER_CLINICIAN,
    )
    assert granted.status_code == 201
    assert 250 < granted.json()["expires_at"] - time.time() <= 300
    assert (await client.get(f"/v1/patients/{pid}", headers=OTHER_CLINICIAN)).status_code == 200
    # One patient only, and only for the clinician who asked.
    assert (await client.get(f"/v1/patients/{other}", headers=OTHER_CLINICIAN)).status_code == 404
    third = bearer("clinician", "dr-c", ("team-3",))
    assert (await client.get(f"/v1/patients/{pid}", headers=third)).status_code == 404
    entries = await api_env.services.audit.entries()
    emergency = [
        e.record
        for e in entries
        if e.record.purpose.startswith("ETREAT") and e.record.outcome == "allowed"
    ]
    assert [r.action for r in emergency] == ["break_glass.start", "patient.read"]
    # The reason is bound by a salted digest; its text and salt stay sealed in the grant, with
    # the patient (erased with them), so the trail alone confirms no guess.
    reason = "unconscious in the ED, needs history"
    assert reason not in str([e.record for e in entries])
    svc = api_env.services
    (grant,) = await svc.documents.list("break_glass", patient_id=pid, after=None, limit=10)
    body = json.loads(await svc.sealer.open(pid, kind="break_glass", version=0, sealed=grant.body))
    (kept,) = body["history"]
    assert kept["reason"] == reason
    assert emergency[0].purpose == f"ETREAT reason-hmac:{reason_digest(reason, kept['salt'])}"
    assert hashlib.sha256(reason.encode()).hexdigest()[:32] not in emergency[0].purpose
    # Expiry: a grant whose time has passed no longer opens the record.
    from twin.service import access

    access_time = time.time
    try:
        access.time.time = lambda: access_time() + 301  # type: ignore[attr-defined]
        assert (await client.get(f"/v1/patients/{pid}", headers=OTHER_CLINICIAN)).status_code == 404
    finally:
        access.time.time = access_time  # type: ignore[attr-defined]


async def test_care_settings_are_taken_by_interventions_and_scenarios(api_env):
    client = api_env.http
    pid = (await client.post("/v1/patients", json=ADA, headers=ADMIN)).json()["patient_id"]
    items = [
        {"idempotency_key": "c", "day": 0, "payload": {"type": "care_status", "active": True,
                                                       "setting": "usual"}},
    ]  # fmt: skip
    url = f"/v1/patients/{pid}/interventions"
    assert (await client.post(url, json={"items": items}, headers=CLINICIAN)).status_code == 200
    bad = [{**items[0], "idempotency_key": "d", "payload": {**items[0]["payload"], "setting": "x"}}]
    refused = await client.post(url, json={"items": bad}, headers=CLINICIAN)
    assert refused.status_code == 422 and '"x"' not in refused.text
    phq9 = [{"idempotency_key": "q", "day": 0.5, "payload": {"type": "phq9", "total": 18}}]
    await client.post(f"/v1/patients/{pid}/observations", json={"items": phq9}, headers=CLINICIAN)
    scenarios = [{"name": s, "care": s} for s in ("none", "usual", "collaborative", "trial")]
    report = await client.post(
        f"/v1/patients/{pid}/scenarios",
        json={"title": "care", "weeks": 12, "scenarios": scenarios},
        headers=CLINICIAN,
    )
    assert report.status_code == 201, report.text
    forecasts = report.json()["forecasts"]
    assert [f["scenario"] for f in forecasts] == [s["name"] for s in scenarios]
    # Latent severity at week 12 (median): more contact, lower.
    medians = [f["severity_quantiles"][-1][3] for f in forecasts]
    assert medians[3] < medians[0]
    weekly = await client.post(
        f"/v1/patients/{pid}/scenarios",
        json={"title": "care", "weeks": 2, "scenarios": [{"care": "weekly"}]},
        headers=CLINICIAN,
    )
    assert weekly.status_code == 422


async def test_covariates_given_at_registration_are_the_twins_first_event(api_env):
    client = api_env.http
    body = {**ADA, "covariates": {"episode_weeks": 40, "anxiety_comorbid": True}}
    pid = (await client.post("/v1/patients", json=body, headers=ADMIN)).json()["patient_id"]
    log = await api_env.services.events.read(pid)
    assert [type(e.payload).__name__ for e in log] == ["Covariates"]
    assert log[0].payload.episode_weeks == 40 and log[0].payload.anxiety_comorbid is True
    twin = (await client.get(f"/v1/patients/{pid}/twin", headers=CLINICIAN)).json()
    assert twin["last_seq"] == 1
    # Refused covariates register nothing (they are checked before the patient exists).
    before = (await client.get("/v1/patients?care_team=team-1", headers=ADMIN)).json()["items"]
    audit = [e.record for e in await api_env.services.audit.entries()]
    assert any(r.action == "covariates.ingest" and r.patient_id == pid for r in audit)
    bad_cases = (
        {"age_years": 15}, {}, {"prior_episodes": 1.5}, {"episode_weeks": -1},
        {"prior_episodes": True}, {"anxiety_comorbid": "yes"}, {"age_years": "70"},
        {"episode_weeks": 10**400},
    )  # fmt: skip
    for bad in bad_cases:
        refused = await client.post(
            "/v1/patients", json={**ADA, "mrn": "M9", "covariates": bad}, headers=ADMIN
        )
        assert refused.status_code == 422, bad
    after = (await client.get("/v1/patients?care_team=team-1", headers=ADMIN)).json()["items"]
    assert after == before


async def test_a_day_off_the_time_axis_or_far_past_the_latest_event_stores_nothing(api_env):
    client = api_env.http
    pid = (await client.post("/v1/patients", json=ADA, headers=ADMIN)).json()["patient_id"]
    url = f"/v1/patients/{pid}/observations"

    def item(key: str, day: float) -> dict:
        return {"items": [{"idempotency_key": key, "day": day,
                           "payload": {"type": "phq9", "total": 12}}]}  # fmt: skip

    far = await client.post(url, json=item("far", 999_999), headers=SERVICE)
    assert far.status_code == 422
    gap = await client.post(url, json=item("gap", 5_000), headers=SERVICE)
    assert gap.status_code == 422 and "check the time axis" in gap.json()["detail"]
    assert await api_env.services.events.last_seq(pid) == 0
    ok = await client.post(url, json=item("ok", 3.0), headers=SERVICE)
    assert ok.status_code in (200, 201, 202)
    assert (await client.get(f"/v1/patients/{pid}/twin", headers=CLINICIAN)).status_code == 200


async def test_nothing_is_stored_for_an_erased_patient(api_env):
    client = api_env.http
    pid = (await client.post("/v1/patients", json=ADA, headers=ADMIN)).json()["patient_id"]
    url = f"/v1/patients/{pid}/observations"
    item = {"idempotency_key": "a", "day": 0, "payload": {"type": "phq9", "total": 12}}
    assert (await client.post(url, json={"items": [item]}, headers=SERVICE)).status_code < 300
    await client.get(f"/v1/patients/{pid}/twin", headers=CLINICIAN)  # the twin is indexed
    assert await api_env.services.index.get(pid) is not None
    assert (await client.delete(f"/v1/patients/{pid}", headers=ADMIN)).status_code == 200
    # Its severity, risk and alert flags are gone from the index and the twins list.
    assert await api_env.services.index.get(pid) is None
    listed = (await client.get("/v1/twins", headers=ADMIN)).json()
    assert pid not in str(listed)
    before = await api_env.services.events.last_seq(pid)
    # Straight to the event log, past the API's access check (a write that checked earlier).
    import pytest

    from twin import errors
    from twin.domain import events as E
    from twin.ports import NewEvent

    with pytest.raises(errors.KeyAccessError, match="erased"):
        await api_env.services.events.append(pid, [NewEvent("late", 1.0, E.Phq9(9))])
    assert await api_env.services.events.last_seq(pid) == before


async def test_every_patient_a_listing_discloses_is_audited_by_name(api_env):
    client = api_env.http
    created = []
    for i in range(3):
        body = {**ADA, "mrn": f"DISC-{i}"}
        pid = (await client.post("/v1/patients", json=body, headers=ADMIN)).json()["patient_id"]
        phq9 = [{"idempotency_key": f"d{i}", "day": 0.0, "payload": {"type": "phq9", "total": 12}}]
        await client.post(f"/v1/patients/{pid}/observations", json={"items": phq9}, headers=ADMIN)
        created.append(pid)
    research = bearer("researcher", "res-d")
    listed = await client.get("/v1/research/twins?limit=2", headers=research)
    assert listed.status_code == 200 and len(listed.json()["items"]) == 2
    searched = await client.get("/v1/twins?limit=500", headers=ADMIN)
    assert len(searched.json()["items"]) == 3
    # One audit entry per listing, bound by digest to a manifest that names every patient.
    entries = [e.record for e in await api_env.services.audit.entries()]
    documents = api_env.services.documents

    async def disclosed(action: str) -> list[str]:
        (entry,) = [r for r in entries if r.action == action]
        digest = entry.purpose.rsplit("manifest-sha256:", 1)[1]
        manifest = await documents.get(DISCLOSURES, digest[:32])
        assert hashlib.sha256(manifest.body).hexdigest() == digest
        return json.loads(manifest.body)["patients"]

    to_researcher = await disclosed("research.twins.disclose")
    assert len(to_researcher) == 2 and set(to_researcher) <= set(created)
    assert set(await disclosed("twin.search.disclose")) == set(created)
    research = [r for r in entries if r.actor == "res-d"]
    assert all(r.purpose.startswith("HRESCH") for r in research) and len(research) == 2


async def test_the_audit_trail_shows_an_entry_altered_behind_the_services_back(api_env):
    import aiosqlite

    client = api_env.http
    auditor = bearer("auditor", "aud-1")
    for mrn in ("AUD-1", "AUD-2"):
        created = await client.post("/v1/patients", json={**ADA, "mrn": mrn}, headers=ADMIN)
        assert created.status_code == 201
    files = api_env.settings.data_dir.rglob("*.db")
    (database,) = [f for f in files if b"audit_log" in f.read_bytes()]
    async with aiosqlite.connect(database) as raw:
        await raw.execute("DROP TRIGGER audit_log_no_update")
        await raw.execute(
            'UPDATE audit_log SET record = \'{"actor": 7, "role": "ADMIN!", "action": '
            '"patient.create", "patient_id": "../../x", "outcome": "allowed", '
            '"purpose": "x", "at": "now", "request_id": "r r"}\', hash = \'zz\' '
            "WHERE seq = 1"
        )
        await raw.execute("UPDATE audit_log SET record = 'not json' WHERE seq = 2")
        await raw.commit()
    page = await client.get("/v1/audit", headers=auditor)
    assert page.status_code == 200, page.text
    first, second = page.json()["items"][:2]
    assert first["actor"] == "<malformed>" and first["role"] == "ADMIN!" and first["hash"] == "zz"
    assert first["patient_id"] == "../../x" and first["request_id"] == "r r"
    assert second["action"] == "<malformed>" and second["outcome"] == "denied"
    verified = (await client.get("/v1/audit/verify", headers=auditor)).json()
    assert verified["ok"] is False and verified["first_bad_seq"] == 1


async def test_an_audit_row_planted_with_a_seq_out_of_range_is_reported_not_a_500(api_env):
    import aiosqlite

    client = api_env.http
    auditor = bearer("auditor", "aud-1")
    created = await client.post("/v1/patients", json={**ADA, "mrn": "AUD-9"}, headers=ADMIN)
    assert created.status_code == 201
    files = api_env.settings.data_dir.rglob("*.db")
    (database,) = [f for f in files if b"audit_log" in f.read_bytes()]
    planted = MAX_SEQ + 7  # above what the service writes, within a BIGINT

    async def plant(seq: int) -> None:
        async with aiosqlite.connect(database) as raw:
            await raw.execute(
                "INSERT INTO audit_log (seq, record, prev_hash, hash) "
                "SELECT ?, record, hash, hash FROM audit_log WHERE seq = 1",
                (seq,),
            )
            await raw.commit()

    await plant(planted)
    verified = await client.get("/v1/audit/verify", headers=auditor)
    assert verified.status_code == 200, verified.text
    body = verified.json()
    assert body["ok"] is False and body["first_bad_seq"] == planted
    assert "out of range" in body["reason"]
    page = await client.get("/v1/audit", params={"limit": 1000}, headers=auditor)
    assert page.status_code == 200, page.text
    assert planted in [item["seq"] for item in page.json()["items"]]
    # A row at the column's largest value leaves no room to append: refused, never a 500.
    await plant(2**63 - 1)
    refused = await client.get("/v1/audit/verify", headers=auditor)
    assert refused.status_code == 503, refused.text


async def test_the_api_hashes_the_audit_chain_off_its_event_loop(api_env, monkeypatch):
    import threading

    from twin.domain.audit import ChainVerifier

    fed_on: list[int] = []
    feed = ChainVerifier.feed

    def watched(self: ChainVerifier, entries: object) -> bool:
        fed_on.append(threading.get_ident())
        return feed(self, entries)

    monkeypatch.setattr(ChainVerifier, "feed", watched)
    await api_env.http.post("/v1/patients", json={**ADA, "mrn": "AUD-T"}, headers=ADMIN)
    verified = await api_env.http.get("/v1/audit/verify", headers=bearer("auditor", "aud-1"))
    assert verified.status_code == 200 and verified.json()["entries"] >= 1
    assert fed_on and threading.get_ident() not in fed_on


async def test_an_empty_scenario_name_is_refused_not_answered_with_a_500(api_env):
    client = api_env.http
    pid = (await client.post("/v1/patients", json=ADA, headers=ADMIN)).json()["patient_id"]
    unnamed = {"weeks": 1, "scenario": {"name": ""}}
    answer = await client.post(f"/v1/patients/{pid}/forecast", json=unnamed, headers=ADMIN)
    assert answer.status_code == 422, answer.text
    compare = {"title": "t", "weeks": 1, "scenarios": [{"name": ""}]}
    answer = await client.post(f"/v1/patients/{pid}/scenarios", json=compare, headers=ADMIN)
    assert answer.status_code == 422, answer.text
