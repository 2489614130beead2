"""The SDK's transport rules against scripted HTTP answers (httpx.MockTransport)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest

from twin import errors
from twin.client import Client, RetryPolicy, observation
from twin.domain import events as E

FAST = RetryPolicy(attempts=4, initial_s=0.001, max_s=0.01)
AT = datetime(2024, 3, 5, 9, 30, tzinfo=UTC)
PROBLEM = {"content-type": "application/problem+json"}


def _client(answers: list[httpx.Response], seen: list[httpx.Request]) -> Client:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    return Client("http://api", token="t0k", retry=FAST, transport=httpx.MockTransport(handler))


def _ingest_ok() -> httpx.Response:
    return httpx.Response(200, json={"acknowledged": [{"seq": 1, "duplicate": False}],
                                     "alerts": [], "last_seq": 1})  # fmt: skip


def test_retryable_answers_are_retried_with_the_same_idempotency_keys():
    seen: list[httpx.Request] = []
    busy = httpx.Response(503, headers={**PROBLEM, "retry-after": "0"},
                          json={"title": "Service Unavailable", "status": 503})  # fmt: skip
    limited = httpx.Response(429, headers={**PROBLEM, "retry-after": "0"},
                             json={"title": "Too Many Requests", "status": 429})  # fmt: skip
    with _client([busy, limited, _ingest_ok()], seen) as api:
        out = api.add_observations("pt_1", [observation(E.Phq9(10), effective=AT)])
    assert out.last_seq == 1 and len(seen) == 3
    bodies = [json.loads(r.content) for r in seen]
    assert len({b["items"][0]["idempotency_key"] for b in bodies}) == 1
    assert seen[0].headers["authorization"] == "Bearer t0k"


def test_an_observation_takes_an_aware_datetime_and_sends_it_as_an_instant():
    seen: list[httpx.Request] = []
    paris = timezone(timedelta(hours=1))
    with _client([_ingest_ok()], seen) as api:
        api.add_observations(
            "pt_1", [observation(E.Phq9(10), effective=datetime(2024, 3, 5, 10, 30, tzinfo=paris))]
        )
    (item,) = json.loads(seen[0].content)["items"]
    assert item["effective"] == "2024-03-05T09:30:00Z" and "day" not in item  # the same instant
    with pytest.raises(errors.InvalidInputError, match="aware"):
        observation(E.Phq9(10), effective=datetime(2024, 3, 5, 10, 30))  # a wall-clock time
    for when in ({}, {"effective": AT, "day": 1.0}):
        with pytest.raises(errors.InvalidInputError, match="exactly one"):
            observation(E.Phq9(10), **when)  # type: ignore[arg-type]


def test_the_float_day_still_works_and_warns_that_it_is_deprecated():
    with pytest.warns(DeprecationWarning, match="effective"):
        item = observation(E.Phq9(10), day=2.5)
    assert item.day == 2.5 and item.effective is None


def test_a_gateways_answer_for_a_lost_server_is_retried_and_the_apis_own_500_or_404_is_not():
    seen: list[httpx.Request] = []
    lost = [httpx.Response(s, text="Bad Gateway") for s in (500, 502)]
    # Serve's proxy before its routes are known again (after it restarted): a plain-text 404.
    lost.append(httpx.Response(404, text="Path '/v1/patients/pt_1/observations' not found."))
    with _client([*lost, _ingest_ok()], seen) as api:
        out = api.add_observations("pt_1", [observation(E.Phq9(10), effective=AT)])
    assert out.last_seq == 1 and len(seen) == 4
    assert len({json.loads(r.content)["items"][0]["idempotency_key"] for r in seen}) == 1
    seen.clear()
    ours = httpx.Response(500, headers=PROBLEM, json={"title": "Internal Server Error",
                                                      "status": 500})  # fmt: skip
    with _client([ours], seen) as api, pytest.raises(errors.ApiError):
        api.add_observations("pt_1", [observation(E.Phq9(10), effective=AT)])
    assert len(seen) == 1
    seen.clear()
    lost_creation = [httpx.Response(500, text="lost")]
    with _client(lost_creation, seen) as api, pytest.raises(errors.UpstreamLostError):
        api.create_patient(name="N", birth_date="1990-01-01", mrn="M", care_team="t")
    assert len(seen) == 1  # still never a second creation: its outcome is unknown


def test_problems_become_the_platforms_exceptions_and_creation_is_not_retried():
    seen: list[httpx.Request] = []
    cases = [
        (401, errors.AuthenticationError),
        (403, errors.AuthorizationError),
        (404, errors.NotFoundError),
        (422, errors.InvalidInputError),
        (410, errors.KeyAccessError),
        (418, errors.ApiError),
    ]
    answers = [
        httpx.Response(s, headers=PROBLEM, json={"title": "x", "status": s, "detail": "why"})
        for s, _ in cases
    ]
    with _client(answers, seen) as api:
        for _, exc in cases:
            with pytest.raises(exc):
                api.twin("pt_1")
    assert len(seen) == len(cases)  # none of these is retried
    seen.clear()
    busy = httpx.Response(503, headers=PROBLEM, json={"title": "busy", "status": 503})
    with _client([busy], seen) as api, pytest.raises(errors.OverloadedError):
        api.create_patient(name="N", birth_date="1990-01-01", mrn="M", care_team="t")
    assert len(seen) == 1  # a creation has no idempotency key: never sent twice


def test_transport_errors_are_retried_then_raised():
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("refused", request=request)

    transport = httpx.MockTransport(handler)
    with (
        Client("http://api", token="t", retry=FAST, transport=transport) as api,
        pytest.raises(httpx.ConnectError),
    ):
        api.twin("pt_1")
    assert calls == FAST.attempts


def test_the_sdk_installs_and_imports_without_ray_or_the_server_stack():
    code = (
        "import sys, twin.client, twin.client.http;"
        "server = ('ray', 'fastapi', 'starlette', 'asyncpg', 'boto3');"
        "bad = [m for m in server if m in sys.modules];"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_frames_and_fan_chart_from_a_forecast(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from twin import schemas
    from twin.client.frames import events_frame, forecast_frame
    from twin.client.plot import plot_forecast

    levels = [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95]
    fc = schemas.ForecastOut(
        scenario="as now", weeks=[1, 2], quantile_levels=levels,
        phq9_quantiles=[[5, 6, 8, 10, 12, 14, 15], [4, 5, 7, 9, 11, 13, 15]],
        gad7_quantiles=[[3] * 7, [2] * 7], severity_quantiles=[[9.5] * 7, [9.0] * 7],
        response={}, remission={}, deterioration={}, median_weeks_to_remission=None,
        model_version="m", as_of_day=10, last_seq=3, days_since={}, particles=100,
    )  # fmt: skip
    frame = forecast_frame(fc)
    assert frame.shape == (14, 6) and frame["time"].isna().all()  # no enrolment: no instants
    dated = forecast_frame(
        fc.model_copy(update={"times": [datetime(2024, 3, 8, tzinfo=UTC),
                                        datetime(2024, 3, 15, tzinfo=UTC)]})
    )  # fmt: skip
    assert str(dated["time"].dtype) == "datetime64[us, UTC]"
    assert dated.query("week == 2")["time"].iloc[0] == datetime(2024, 3, 15, tzinfo=UTC)
    assert frame.query("week == 2 and quantile == 0.5")["phq9"].item() == 9
    ax = plot_forecast(fc, observed=[(0.0, 14)])
    ax.figure.savefig(tmp_path / "fan.png")
    assert (tmp_path / "fan.png").stat().st_size > 1000
    ev = events_frame([schemas.FeedEventOut(seq=1, day=0.5, payload={"type": "gad7", "total": 4})])
    assert list(ev.columns) == ["seq", "day", "effective", "type", "total"]
    at = datetime(2024, 3, 5, 8, 30, tzinfo=UTC)
    ev = events_frame(
        [schemas.FeedEventOut(seq=2, day=0.5, effective=at, payload={"type": "phq9", "total": 4})]
    )
    assert ev["effective"].iloc[0] == at
    assert list(events_frame([]).columns) == ["seq", "day", "effective"]
