"""A clinician's caseload over HTTP and the SDK: scope, filters, order, pages, audit."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.integration.conftest import bearer
from twin.service.access import DISCLOSURES

pytestmark = pytest.mark.integration

ADMIN = bearer("admin", "root")
CLINICIAN = bearer("clinician", "dr-c", ("team-1", "team-2"))


async def _patient(client, mrn: str, team: str, phq9: int | None) -> str:
    body = {"name": f"Canary {mrn}", "birth_date": "1980-12-10", "mrn": mrn, "care_team": team}
    pid = (await client.post("/v1/patients", json=body, headers=ADMIN)).json()["patient_id"]
    if phq9 is not None:
        item = {"idempotency_key": f"k-{mrn}", "day": 0.0,
                "payload": {"type": "phq9", "total": phq9}}  # fmt: skip
        answer = await client.post(
            f"/v1/patients/{pid}/observations", json={"items": [item]}, headers=ADMIN
        )
        assert answer.status_code == 200, answer.text
    return pid


@pytest.fixture
async def caseload(api_env):
    client = api_env.http
    pids = {
        "low": await _patient(client, "CL-LOW", "team-1", 3),
        "mid": await _patient(client, "CL-MID", "team-2", 12),
        "high": await _patient(client, "CL-HIGH", "team-1", 24),
        "new": await _patient(client, "CL-NEW", "team-1", None),
        "other": await _patient(client, "CL-OTHER", "team-3", 20),
    }
    return api_env, pids


async def test_a_clinician_sees_every_patient_of_their_teams_most_severe_first(caseload):
    env, pids = caseload
    answer = await env.http.get("/v1/caseload", headers=CLINICIAN)
    assert answer.status_code == 200, answer.text
    page = answer.json()
    names = [item["name"] for item in page["items"]]
    # The patient without events has no summary and sorts last; team-3 is not theirs.
    assert names == ["Canary CL-HIGH", "Canary CL-MID", "Canary CL-LOW", "Canary CL-NEW"]
    assert page["next_after"] is None
    high, new = page["items"][0], page["items"][3]
    assert high["patient_id"] == pids["high"] and high["care_team"] == "team-1"
    assert high["mrn"] == "CL-HIGH" and high["enrolled_at"]
    assert high["twin"]["severity_mean"] > page["items"][1]["twin"]["severity_mean"]
    assert 0.0 <= high["twin"]["p_severe"] <= 1.0 and high["twin"]["last_seq"] >= 1
    assert new["twin"] is None


async def test_filters_and_ascending_order(caseload):
    env, pids = caseload
    ascending = await env.http.get("/v1/caseload?sort=severity", headers=CLINICIAN)
    order = [item["patient_id"] for item in ascending.json()["items"]]
    assert order == [pids["low"], pids["mid"], pids["high"], pids["new"]]
    severe = await env.http.get("/v1/caseload?min_severity=10", headers=CLINICIAN)
    assert [i["patient_id"] for i in severe.json()["items"]] == [pids["high"], pids["mid"]]
    one_team = await env.http.get("/v1/caseload?care_team=team-2", headers=CLINICIAN)
    assert [i["patient_id"] for i in one_team.json()["items"]] == [pids["mid"]]
    by_id = await env.http.get("/v1/caseload?sort=patient_id", headers=CLINICIAN)
    listed = [i["patient_id"] for i in by_id.json()["items"]]
    assert listed == sorted(listed) and len(listed) == 4


async def test_pages_continue_without_repeats_and_the_sdk_walks_them(caseload):
    env, _ = caseload
    whole = (await env.http.get("/v1/caseload?sort=-p_severe", headers=CLINICIAN)).json()
    seen, after = [], None
    while True:
        query = "/v1/caseload?sort=-p_severe&limit=1" + (f"&after={after}" if after else "")
        page = (await env.http.get(query, headers=CLINICIAN)).json()
        seen.extend(i["patient_id"] for i in page["items"])
        after = page["next_after"]
        if after is None:
            break
    assert seen == [i["patient_id"] for i in whole["items"]]
    async with env.sdk("clinician", "dr-c", ("team-1", "team-2")) as sdk:
        walked = [
            item.patient_id async for item in sdk.iter_caseload(sort="-p_severe", page_size=2)
        ]
    assert walked == seen


async def test_a_cursor_of_another_order_or_a_forged_one_is_refused(caseload):
    env, _ = caseload
    first = (await env.http.get("/v1/caseload?limit=1", headers=CLINICIAN)).json()
    other_order = await env.http.get(
        f"/v1/caseload?limit=1&sort=severity&after={first['next_after']}", headers=CLINICIAN
    )
    assert other_order.status_code == 422
    assert "another sort order" in other_order.json()["detail"]
    for forged in ("bm90LWpzb24", "W1siLXNldmVyaXR5Il1d", "A" * 256):
        answer = await env.http.get(f"/v1/caseload?after={forged}", headers=CLINICIAN)
        assert answer.status_code == 422, (forged, answer.text)
    bad_sort = await env.http.get("/v1/caseload?sort=name", headers=CLINICIAN)
    assert bad_sort.status_code == 422


async def test_scope_is_the_callers_own_teams(caseload):
    env, pids = caseload
    foreign = await env.http.get("/v1/caseload?care_team=team-3", headers=CLINICIAN)
    assert foreign.status_code == 403
    admin_without_team = await env.http.get("/v1/caseload", headers=ADMIN)
    assert admin_without_team.status_code == 403
    admin = await env.http.get("/v1/caseload?care_team=team-3", headers=ADMIN)
    assert [i["patient_id"] for i in admin.json()["items"]] == [pids["other"]]
    for role in ("researcher", "auditor", "service"):
        refused = await env.http.get("/v1/caseload", headers=bearer(role, "x", ("team-1",)))
        assert refused.status_code == 403, role


async def test_every_patient_on_a_page_is_audited_as_disclosed(caseload):
    env, _ = caseload
    page = (await env.http.get("/v1/caseload?limit=2", headers=CLINICIAN)).json()
    shown = [i["patient_id"] for i in page["items"]]
    entries = [e.record for e in await env.services.audit.entries()]
    (entry,) = [r for r in entries if r.action == "patient.caseload.disclose"]
    assert entry.actor == "dr-c"
    digest = entry.purpose.rsplit("manifest-sha256:", 1)[1]
    manifest = await env.services.documents.get(DISCLOSURES, digest[:32])
    assert hashlib.sha256(manifest.body).hexdigest() == digest
    assert json.loads(manifest.body)["patients"] == shown
    refusals = await env.http.get("/v1/caseload?care_team=team-3", headers=CLINICIAN)
    assert refusals.status_code == 403
    entries = [e.record for e in await env.services.audit.entries()]
    denied = [r for r in entries if r.action == "patient.caseload" and r.outcome != "allowed"]
    assert len(denied) == 1


async def test_an_erased_patient_leaves_the_caseload(caseload):
    env, pids = caseload
    erased = await env.http.delete(f"/v1/patients/{pids['mid']}", headers=ADMIN)
    assert erased.status_code == 200
    page = (await env.http.get("/v1/caseload", headers=CLINICIAN)).json()
    assert pids["mid"] not in [i["patient_id"] for i in page["items"]]
    assert len(page["items"]) == 3


async def test_a_scope_larger_than_the_caseload_orders_is_refused_not_cut(caseload, monkeypatch):
    from twin.service import application

    env, _ = caseload
    monkeypatch.setattr(application, "MAX_SCOPE", 3)  # the clinician's teams hold 4
    answer = await env.http.get("/v1/caseload", headers=CLINICIAN)
    assert answer.status_code == 422
    assert "at most 3 patients" in answer.json()["detail"]
    one_team = await env.http.get("/v1/caseload?care_team=team-2", headers=CLINICIAN)
    assert one_team.status_code == 200
