"""Property-based fuzzing of the live API (schemathesis over HTTP, its own OpenAPI document).

A real uvicorn server in a thread serves the app (``deployments.asgi``) on the embedded stores;
schemathesis loads ``/openapi.json`` from it and, for every operation, sends valid and invalid
requests. Every check runs: no 5xx, responses and status codes conform to the schema, invalid
data is rejected. Path ids point at a seeded patient so business logic is reached; the change
feed is fuzzed without ``follow`` (an open stream would hold the test for ``max_s``).

``positive_data_acceptance`` is left out: some rules cannot be written in JSON Schema (a birth
date not after today, PHQ-9 items summing to the total, events in time order, a payload's
fields by its ``type``), so a schema-valid request may rightly get 422.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from deployments.asgi import build_app
from tests.integration.conftest import api_settings, bearer
from tests.servers import UvicornServer
from twin.client import Client, observation
from twin.domain import events as E

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    data: Path = tmp_path_factory.mktemp("live")
    # The security scheme is declared, so every operation is also sent without a token and with
    # a wrong one (expecting 401): the address's failed-authentication budget must outlast them.
    server = UvicornServer(build_app(api_settings(data, auth_failures_per_minute=10_000)))
    server.start(timeout_s=30)
    url = server.url
    token = bearer("clinician", "dr-fuzz", ("team-1",))["Authorization"].split()[1]
    with Client(url, token=token) as client:
        pid = client.create_patient(
            name="Fuzz Canary", birth_date="1985-05-05", mrn="FZ-1", care_team="team-1"
        )
        client.add_observations(pid, [observation(E.Phq9(15), effective=datetime.now(UTC))])
    yield url, pid
    server.stop()


ROLE_BY_PREFIX = (("/v1/research", "researcher"), ("/v1/audit", "auditor"))


def _operations(url: str) -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    # Each case is sent with a real token of its role (below), so the bearer header is not
    # generated; the ignored_auth check still sends every operation without one and with a
    # wrong one.
    schema.config.generation.update(with_security_parameters=False)
    return [result.ok() for result in schema.get_all_operations()]


def _fuzz(
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    url: str,
    pid: str,
    headers: dict[str, str],
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=20,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case: schemathesis.Case) -> None:
        if case.path_parameters and "patient_id" in case.path_parameters:
            case.path_parameters["patient_id"] = pid
        if case.query and "follow" in case.query:
            case.query["follow"] = "false"
        case.call_and_validate(
            base_url=url, headers=headers, excluded_checks=[positive_data_acceptance]
        )

    check()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_conforms_to_its_schema(live: tuple[str, str], mode: GenerationMode) -> None:
    url, pid = live
    operations = _operations(url)
    assert len(operations) >= 17
    no_negative: list[str] = []
    for operation in operations:
        role = next((r for p, r in ROLE_BY_PREFIX if operation.path.startswith(p)), "admin")
        try:
            _fuzz(operation, mode, url, pid, bearer(role, f"fuzz-{role}"))
        except Unsatisfiable:
            # An operation with nothing to make invalid (no body, no constrained parameter).
            assert mode is GenerationMode.NEGATIVE, operation.label
            no_negative.append(operation.label)
    assert len(no_negative) < len(operations) // 2, no_negative
