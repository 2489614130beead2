"""End to end: the Serve application on local Ray, driven over HTTP by the researcher SDK.

The same code path as ``novamind up``: ``start``-ed hosts are found by name, the Serve replica
opens its own stores from ``NOVAMIND_*`` variables in its runtime_env, tokens are signed with
the generated local secret.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from deployments.ops.platform import local_token
from tests.servers import free_port
from twin import errors
from twin.client import Client, RetryPolicy, observation
from twin.domain import events as E
from twin.domain.specs import Scenario
from twin.model.cohort import CohortSpec
from twin.settings import TwinSettings

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")

from ray.serve.config import AutoscalingConfig  # noqa: E402 - after the importorskip

from deployments.pipelines.job_runner import RUNNER_NAME  # noqa: E402
from deployments.serve_app import API_DEPLOYMENT, application  # noqa: E402

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def served(
    ray_cluster: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, TwinSettings]]:
    # One Serve application for the module: starting and stopping Serve costs seconds each.
    settings = TwinSettings(
        data_dir=tmp_path_factory.mktemp("served"),
        particles=200,
        hosts=2,
        ray_namespace=f"serve-{uuid.uuid4().hex[:8]}",
        http_port=free_port(),
        api_min_replicas=1,
        api_max_replicas=1,
        api_max_ongoing_requests=2,
        api_max_queued_requests=2,
    )
    serve.start(http_options={"host": "127.0.0.1", "port": settings.http_port})
    serve.run(application(settings), name="novamind-test", route_prefix="/")
    yield f"http://127.0.0.1:{settings.http_port}", settings
    serve.shutdown()
    ray.kill(ray.get_actor(RUNNER_NAME, namespace=settings.ray_namespace), no_restart=True)
    for i in range(settings.hosts):
        ray.kill(ray.get_actor(f"twinhost-{i}", namespace=settings.ray_namespace), no_restart=True)


def test_a_clinician_and_a_researcher_over_http_on_serve(served):
    url, settings = served
    clinician = local_token(settings, "clinician", subject="dr-e2e", care_team=("team-1",))
    with Client(url, token=clinician, retry=RetryPolicy(attempts=3, initial_s=0.1)) as api:
        assert api.ready()
        enrolled = datetime(2024, 3, 1, 8, tzinfo=UTC)
        pid = api.create_patient(
            name="Serve Canary", birth_date="1979-09-09", mrn="SV-1", care_team="team-1",
            enrolled_at=enrolled,
        )  # fmt: skip
        acks = api.add_observations(
            pid,
            [observation(E.Phq9(17), effective=enrolled),
             observation(E.Gad7(12), effective=enrolled + timedelta(days=0.2))],
        )  # fmt: skip
        assert [a.seq for a in acks.acknowledged] == [1, 2]
        assert [a.day for a in acks.acknowledged] == [0.0, 0.2]
        api.add_interventions(
            pid,
            [observation(E.Prescription("sertraline", 50.0), effective=enrolled + timedelta(1))],
        )
        twin = api.twin(pid)
        assert twin.last_seq == 3 and twin.severity_mean > 5
        assert twin.as_of == enrolled + timedelta(days=twin.day)  # through Serve and the actors
        forecast = api.forecast(pid, weeks=4)
        assert forecast.weeks == [1, 2, 3, 4]
        report = api.compare_scenarios(
            pid, title="care", weeks=4, scenarios=[Scenario(), Scenario(name="b", care=True)]
        )
        assert api.scenario_report(pid, report.report_id).report_id == report.report_id
        assert [e.seq for e in api.events(pid, after=1)] == [2, 3]
        assert [t.patient_id for t in api.search_twins()] == [pid]
        with pytest.raises(errors.NotFoundError):
            api.twin("pt_unknown")
    researcher = local_token(settings, "researcher", subject="study")
    with Client(url, token=researcher) as research:
        rows = research.research_twins()
        assert len(rows) == 1 and "Serve" not in rows[0].model_dump_json()
        with pytest.raises(errors.AuthorizationError):
            research.patient(pid)
    with Client(url, token=local_token(settings, "auditor", subject="aud")) as auditor:
        assert auditor.verify_audit().ok
        assert len(list(auditor.iter_audit())) >= 10


def test_a_researcher_runs_a_cohort_what_if_through_the_sdk(served):
    url, settings = served
    researcher = local_token(settings, "researcher", subject="cohort-study")
    with Client(url, token=researcher) as research:
        job = research.cohorts.run(
            [Scenario(name="care"), Scenario(name="no care", care=False)],
            synthetic=CohortSpec(n_patients=6, days=7, seed=2, screen_phq9_min=10),
            weeks=4,
            particles=50,
        )
        seen: list[int] = []
        final = job.wait(
            timeout_s=180, poll_s=0.5, on_progress=lambda s: seen.append(s.patients_done)
        )
        assert final.patients_done == 6 and seen[-1] == 6
        rows = job.results()
        assert len(rows) == 12 and set(rows["scenario"]) == {"care", "no care"}
        assert rows["pseudonym"].str.startswith("syn-2-").all()
        summary = job.aggregate()
        assert list(summary["week"][:4]) == [1, 2, 3, 4]
        assert [r.job_id for r in research.iter_cohort_runs()][-1] == job.job_id
    clinician = local_token(settings, "clinician", subject="dr-c", care_team=("team-1",))
    with Client(url, token=clinician) as api, pytest.raises(errors.AuthorizationError):
        api.cohorts.run([Scenario()], synthetic=CohortSpec(n_patients=1, days=0))


def test_the_sdk_example_runs_against_the_served_api(served, tmp_path):
    url, settings = served
    token = local_token(settings, "clinician", subject="dr-example", care_team=("demo-team",))
    example = Path(__file__).parents[2] / "examples" / "sdk_quickstart.py"
    done = subprocess.run(
        [sys.executable, str(example)],
        env={**os.environ, "NOVAMIND_URL": url, "NOVAMIND_TOKEN": token, "MPLBACKEND": "Agg"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "P(remission) change with 100 mg" in done.stdout
    assert (tmp_path / "forecast.png").stat().st_size > 1000


def test_bounded_queues_answer_503_with_retry_after_instead_of_waiting(served):
    url, settings = served
    admin = {"Authorization": f"Bearer {local_token(settings, 'admin')}"}
    with httpx.Client(base_url=url) as http:
        pid = http.post(
            "/v1/patients",
            json={"name": "Q", "birth_date": "1990-01-01", "mrn": "Q1", "care_team": "t"},
            headers=admin,
        ).json()["patient_id"]
        http.post(
            f"/v1/patients/{pid}/observations",
            json={"items": [{"idempotency_key": "a", "day": 0, "payload": {"type": "gad7",
                                                                           "total": 4}}]},
            headers=admin,
        )  # fmt: skip
    statuses: list[int] = []
    retry_after: list[str] = []

    def hit() -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            response = http.post(f"/v1/patients/{pid}/forecast", json={"weeks": 26}, headers=admin)
            statuses.append(response.status_code)
            if response.status_code == 503:
                retry_after.append(response.headers.get("retry-after", ""))

    threads = [threading.Thread(target=hit) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(statuses) <= {200, 503}
    assert statuses.count(200) >= 4  # the admitted ones complete
    assert statuses.count(503) >= 1, statuses  # the rest are turned away at once
    assert all(value == "1" for value in retry_after)


def test_the_serve_config_entry_point_builds_the_bounded_autoscaling_app():
    from deployments.serve_app import app_builder, settings_env

    app = app_builder(
        {"api_max_replicas": "4", "api_max_queued_requests": "9", "api_downscale_delay_s": "45"}
    )
    deployment = app._bound_deployment
    assert deployment.max_queued_requests == 9
    autoscaling = deployment._deployment_config.autoscaling_config
    assert (autoscaling.max_replicas, autoscaling.downscale_delay_s) == (4, 45.0)
    # Left unset, how fast the API scales is Serve's own default (a Ray upgrade that changes
    # Serve's defaults shows here).
    serves = AutoscalingConfig()
    built = application(TwinSettings())._bound_deployment._deployment_config.autoscaling_config
    assert (built.upscale_delay_s, built.downscale_delay_s, built.look_back_period_s) == (
        serves.upscale_delay_s,
        serves.downscale_delay_s,
        serves.look_back_period_s,
    )
    env = settings_env(TwinSettings(jwt_secret="s" * 48))  # type: ignore[arg-type]
    assert "NOVAMIND_JWT_SECRET" not in env and env["NOVAMIND_DATA_DIR"].startswith("/")
    with pytest.raises(ValueError, match="research_key must not be a Serve application argument"):
        app_builder({"research_key": "k" * 48})
    with pytest.raises(ValueError, match="database_url must not be"):
        app_builder({"database_url": "postgresql://u:pw@db/novamind"})


AUTOSCALED_APP = "novamind-autoscale"
#: Generous bound on each scaling step (seconds): Serve samples load every 10 s and a new
#: replica takes seconds to start on a busy machine. The test waits on replica counts, never
#: on time; this only turns a scaler that never acts into a failure.
SCALE_DEADLINE_S = 90.0


def _api_replicas(app: str) -> dict[str, int]:
    """The API deployment's replicas of ``app`` by state, from ``serve.status()``."""
    deployment = serve.status().applications[app].deployments[API_DEPLOYMENT]
    # Keyed by ReplicaState (a str enum) or, as Ray 2.60 gives them, its plain names: either
    # compares equal to "RUNNING".
    return {state: count for state, count in deployment.replica_states.items() if count}


def _await_replicas(
    app: str, reached: Callable[[dict[str, int]], bool], deadline_s: float
) -> list[dict[str, int]]:
    """Poll ``app``'s replica states until ``reached``; the states seen, each change once.

    Raises:
        AssertionError: ``deadline_s`` seconds passed first (with the states seen).
    """
    seen: list[dict[str, int]] = []
    deadline = time.monotonic() + deadline_s
    while True:
        now = _api_replicas(app)
        if not seen or seen[-1] != now:
            seen.append(now)
        if reached(now):
            return seen
        assert time.monotonic() < deadline, f"replicas by state, as they changed: {seen}"
        time.sleep(0.5)


def test_the_api_scales_out_under_held_streams_and_back_in_when_they_close(
    served: tuple[str, TwinSettings], tmp_path: Path
) -> None:
    url, _ = served
    # An application of its own (route, twin hosts, stores) on the module's Serve instance:
    # Serve has one HTTP proxy per cluster, and the module's app keeps its single replica.
    settings = TwinSettings(
        data_dir=tmp_path,
        particles=200,
        hosts=1,
        ray_namespace=f"autoscale-{uuid.uuid4().hex[:8]}",
        api_min_replicas=1,
        api_max_replicas=2,  # with the module's replica, 1.5 of the cluster's 2 CPUs
        api_target_ongoing_requests=1.0,  # each held stream is one ongoing request
        api_upscale_delay_s=1.0,
        api_downscale_delay_s=10.0,
        api_autoscaling_look_back_s=10.5,  # just over Serve's 10 s metrics interval, its least
    )
    base = f"{url}/autoscale"
    try:
        serve.run(application(settings), name=AUTOSCALED_APP, route_prefix="/autoscale")
        assert _api_replicas(AUTOSCALED_APP) == {"RUNNING": 1}
        with Client(base, token=local_token(settings, "admin")) as api:
            pid = api.create_patient(
                name="Scale Out", birth_date="1985-05-05", mrn="AS-1", care_team="team-scale"
            )
        # Four clinicians of the care team each follow the patient's change feed: long-lived
        # requests that count as ongoing without using CPU (one stream per caller, well inside
        # streams_per_caller).
        clinicians = [
            local_token(settings, "clinician", subject=f"dr-scale-{i}", care_team=("team-scale",))
            for i in range(4)
        ]
        with httpx.Client(base_url=base, timeout=30) as http:
            streams: list[httpx.Response] = []
            try:
                for token in clinicians:
                    request = http.build_request(
                        "GET",
                        f"/v1/patients/{pid}/events",
                        # Outlasts the wait for the scale-out, so the load holds throughout.
                        params={"follow": "true", "max_s": SCALE_DEADLINE_S + 30},
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    streams.append(http.send(request, stream=True))  # returns at the headers
                assert [r.status_code for r in streams] == [200] * len(clinicians)
                out = _await_replicas(
                    AUTOSCALED_APP, lambda now: now.get("RUNNING", 0) == 2, SCALE_DEADLINE_S
                )
            finally:
                for response in streams:
                    response.close()
        # Back in: one replica serves and none is starting (a removed one drains for a while).
        back = _await_replicas(
            AUTOSCALED_APP,
            lambda now: now.get("RUNNING", 0) == 1 and "STARTING" not in now,
            SCALE_DEADLINE_S,
        )
        # Out under the load, back in after it: the counts, whatever the time each step took.
        assert (out[-1]["RUNNING"], back[-1]["RUNNING"]) == (2, 1), (out, back)
    finally:
        serve.delete(AUTOSCALED_APP)
        for name in (RUNNER_NAME, *(f"twinhost-{i}" for i in range(settings.hosts))):
            with contextlib.suppress(ValueError):  # not created when the deployment failed
                ray.kill(ray.get_actor(name, namespace=settings.ray_namespace), no_restart=True)
